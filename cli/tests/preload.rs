//! End-to-end tests of tracing without relinking: programs and shared libraries of
//! runtime/tests/programs/preload_*.c are built for riscv64 with pads
//! (`-fpatchable-function-entry=8 -Wl,-q`, rv64gc) and rewritten with `padtrim rewrite
//! --slot 4`, none linked with the runtime; `padtrim record` preloads the runtime built as a
//! shared library (`scripts/runtime-lib --shared`) under qemu-riscv64, and `padtrim replay`
//! names the functions of every module from the trace alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn programs() -> PathBuf {
    repo().join("runtime/tests/programs")
}

/// A fresh directory under cargo's per-target scratch space.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "padtrim-preload-test-{}-{}",
        std::process::id(),
        name
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn gcc(args: &[&std::ffi::OsStr]) {
    let out = Command::new("riscv64-linux-gnu-gcc")
        .args(args)
        .output()
        .expect("run the cross compiler");
    assert!(out.status.success(), "gcc {args:?}: {}", text(&out.stderr));
}

/// The flags of a module built the way real ones come: rv64gc, 16-byte pads of `c.nop`
/// (unusable as slots until rewritten), relocations kept for the rewriter.
const PADS: [&str; 4] = [
    "-march=rv64gc",
    "-O1",
    "-fpatchable-function-entry=8",
    "-Wl,-q",
];

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Build runtime/tests/programs/`src` into `dir/lib<name>.so` with pads.
fn build_lib(dir: &Path, src: &str, name: &str) -> PathBuf {
    let lib = dir.join(format!("lib{name}.so"));
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    let source = programs().join(src);
    args.extend([
        os("-shared"),
        os("-fPIC"),
        source.as_os_str(),
        os("-o"),
        lib.as_os_str(),
    ]);
    gcc(&args);
    lib
}

/// Build runtime/tests/programs/`src` into `dir/name` with pads, linked with `dir`'s
/// `libpreload_lib.so`.
fn build_program(dir: &Path, src: &str, name: &str, extra: &[&str]) -> PathBuf {
    let exe = dir.join(name);
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    let source = programs().join(src);
    args.extend([
        source.as_os_str(),
        os("-L"),
        dir.as_os_str(),
        os("-lpreload_lib"),
    ]);
    args.extend(extra.iter().map(|s| os(s)));
    args.extend([os("-lpthread"), os("-o"), exe.as_os_str()]);
    gcc(&args);
    exe
}

fn padtrim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_padtrim"))
        .args(args)
        .output()
        .expect("run padtrim")
}

/// `padtrim rewrite input --slot 4 -o output`, which must add the `__mcount_loc` table.
fn rewrite(input: &Path, output: &Path) {
    let out = padtrim(&[
        "rewrite",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--slot",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "rewrite {}: {}",
        input.display(),
        text(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["table"], true, "no __mcount_loc table: {stats}");
}

/// The modules of preload_main.c: the original ones in `dir`, rewritten copies (same names)
/// in `dir/rw`. Returns (rewritten program, rewritten plugin).
fn build_main(dir: &Path) -> (PathBuf, PathBuf) {
    let rw = dir.join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let lib = build_lib(dir, "preload_lib.c", "preload_lib");
    let plugin = build_lib(dir, "preload_plugin.c", "preload_plugin");
    let exe = build_program(dir, "preload_main.c", "main", &[]);
    for m in [&lib, &plugin, &exe] {
        rewrite(m, &rw.join(m.file_name().unwrap()));
    }
    (rw.join("main"), rw.join("libpreload_plugin.so"))
}

/// Run a program under qemu without tracing, its libraries from `libdir`.
fn run_untraced(exe: &Path, args: &[&str], libdir: &Path) -> (String, i32) {
    let out = Command::new("qemu-riscv64")
        .args(["-L", "/usr/riscv64-linux-gnu"])
        .arg(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", libdir)
        .output()
        .unwrap();
    (text(&out.stdout), out.status.code().unwrap_or(-1))
}

/// What `padtrim record` did.
struct Recorded {
    stdout: String,
    stderr: String,
    code: i32,
    trace: PathBuf,
}

/// `padtrim record [--graph] [--filter F] -o TRACE -- exe args` with PADTRIM_DEBUG=1 and the
/// libraries from `libdir`.
fn record(exe: &Path, args: &[&str], libdir: &Path, graph: bool, filter: Option<&str>) -> Recorded {
    let trace = exe.with_extension(format!(
        "{}{}.trace",
        if graph { "graph" } else { "entry" },
        if filter.is_some() { "-filtered" } else { "" }
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_padtrim"));
    cmd.arg("record").arg("-o").arg(&trace);
    if graph {
        cmd.arg("--graph");
    }
    if let Some(f) = filter {
        cmd.args(["--filter", f]);
    }
    let out = cmd
        .arg("--")
        .arg(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", libdir)
        .env("PADTRIM_DEBUG", "1")
        .output()
        .unwrap();
    Recorded {
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        code: out.status.code().unwrap_or(-1),
        trace,
    }
}

/// `padtrim replay TRACE extra...` with no other arguments: the trace says where every
/// module is.
fn replay(trace: &Path, extra: &[&str]) -> String {
    let mut args = vec!["replay", trace.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = padtrim(&args);
    assert!(out.status.success(), "replay: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "replay warned: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Calls per function name, from `replay --summary` (a library loaded twice is two
/// modules: its functions have a row per load).
fn calls(trace: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in replay(trace, &["--summary"])
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("CALLS"))
    {
        let mut it = l.split_whitespace();
        let n: u64 = it.next().unwrap().parse().unwrap();
        *out.entry(it.last().unwrap().to_string()).or_default() += n;
    }
    out
}

/// Per thread, the call paths of a graph trace (e.g. "main;lib_entry;lib_leaf") with how
/// many calls took each, from the Chrome events, checking that calls nest and all returned.
fn call_paths(trace: &Path) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let doc: serde_json::Value =
        serde_json::from_str(&replay(trace, &["--format", "chrome"])).unwrap();
    let mut by_tid: BTreeMap<u64, Vec<(f64, f64, String)>> = BTreeMap::new();
    for e in doc["traceEvents"].as_array().unwrap() {
        if e["ph"] != "X" {
            continue;
        }
        assert!(e["args"]["end"].is_null(), "a call did not return: {e}");
        let ts = e["ts"].as_f64().unwrap();
        by_tid.entry(e["tid"].as_u64().unwrap()).or_default().push((
            ts,
            ts + e["dur"].as_f64().unwrap(),
            e["name"].as_str().unwrap().to_string(),
        ));
    }
    let mut out = BTreeMap::new();
    for (tid, calls) in by_tid {
        let mut stack: Vec<&(f64, f64, String)> = Vec::new();
        let mut paths: BTreeMap<String, u64> = BTreeMap::new();
        for c in &calls {
            let eps = 1e-6;
            while let Some(top) = stack.last() {
                if c.0 > top.1 + eps || (c.0 >= top.1 - eps && top.1 - top.0 > eps) {
                    stack.pop();
                } else {
                    break;
                }
            }
            if let Some(top) = stack.last() {
                assert!(c.1 <= top.1 + eps, "{c:?} not nested in {top:?}");
            }
            stack.push(c);
            let path: Vec<&str> = stack.iter().map(|c| c.2.as_str()).collect();
            *paths.entry(path.join(";")).or_default() += 1;
        }
        out.insert(tid, paths);
    }
    out
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

/// The `padtrim: module=PATH ...` line of a module whose path ends with `name`, as key ->
/// value.
fn module_line(stderr: &str, name: &str) -> BTreeMap<String, String> {
    let line = stderr
        .lines()
        .find(|l| {
            l.starts_with("padtrim: module=")
                && l.split_whitespace()
                    .nth(1)
                    .is_some_and(|p| p.ends_with(&format!("/{name}")))
        })
        .unwrap_or_else(|| panic!("no PADTRIM_DEBUG line for {name}: {stderr}"));
    line["padtrim: ".len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `padtrim: preload: ...` summary line, as key -> value.
fn summary_line(stderr: &str) -> BTreeMap<String, String> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("padtrim: preload: mode="))
        .unwrap_or_else(|| panic!("no preload summary line: {stderr}"));
    line["padtrim: preload: ".len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_program_its_library_and_its_plugin_are_traced_without_relinking() {
    let dir = scratch("main");
    let (exe, plugin) = build_main(&dir);
    let rw = exe.parent().unwrap();
    let plugin_arg = plugin.to_str().unwrap();
    let base = run_untraced(&exe, &[plugin_arg], rw);
    assert_eq!(base, ("a=15 b=39 c=9\n".to_string(), 0));
    let every_call = expect(&[
        ("main", 1),
        ("lib_entry", 1),
        ("lib_leaf", 2),
        ("plugin_entry", 2),
        ("plugin_leaf", 5),
        ("main_leaf", 2),
    ]);

    let entry = record(&exe, &[plugin_arg], rw, false, None);
    assert_eq!((entry.stdout.clone(), entry.code), base, "{}", entry.stderr);
    assert_eq!(calls(&entry.trace), every_call);
    // Each module was found, its table read and every slot patched; the plugin was
    // forgotten when it was unloaded.
    for (name, entries) in [
        ("main", "2"),
        ("libpreload_lib.so", "2"),
        ("libpreload_plugin.so", "2"),
    ] {
        let m = module_line(&entry.stderr, name);
        assert_eq!(
            (
                &m["table"][..],
                &m["entries"][..],
                &m["patched"][..],
                &m["skipped"][..],
                &m["unreachable"][..]
            ),
            ("__mcount_loc", entries, entries, "0", "0"),
            "{name}: {}",
            entry.stderr
        );
    }
    assert_eq!(module_line(&entry.stderr, "main")["id"], "0");
    // The plugin, loaded twice, was patched at each load and forgotten at each unload.
    let plugin_loads: Vec<&str> = entry
        .stderr
        .lines()
        .filter(|l| l.starts_with("padtrim: module=") && l.contains("/libpreload_plugin.so "))
        .collect();
    assert_eq!(plugin_loads.len(), 2, "{}", entry.stderr);
    assert_eq!(
        entry
            .stderr
            .lines()
            .filter(|l| l.ends_with(" unloaded"))
            .count(),
        2,
        "{}",
        entry.stderr
    );
    let summary = summary_line(&entry.stderr);
    assert_eq!(
        (&summary["traced"][..], &summary["patched"][..]),
        ("2", "4")
    );
    assert_ne!(
        summary["without-table"], "0",
        "libc and ld.so have no table: {}",
        entry.stderr
    );

    let graph = record(&exe, &[plugin_arg], rw, true, None);
    assert_eq!((graph.stdout.clone(), graph.code), base, "{}", graph.stderr);
    assert_eq!(calls(&graph.trace), every_call);
    let paths = call_paths(&graph.trace);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(
        paths.values().next().unwrap(),
        &expect(&[
            ("main", 1),
            ("main;lib_entry", 1),
            ("main;lib_entry;lib_leaf", 2),
            ("main;plugin_entry", 2),
            ("main;plugin_entry;plugin_leaf", 5),
            ("main;main_leaf", 2),
        ])
    );
    let text = replay(&graph.trace, &[]);
    assert!(
        text.contains("|    lib_entry() {")
            && text.contains("|      plugin_leaf();")
            && text.contains("} /* main */"),
        "{text}"
    );
}

#[test]
fn the_filter_applies_to_every_module() {
    let dir = scratch("filter");
    let (exe, plugin) = build_main(&dir);
    let rw = exe.parent().unwrap();
    let plugin_arg = plugin.to_str().unwrap();
    for graph in [false, true] {
        let r = record(
            &exe,
            &[plugin_arg],
            rw,
            graph,
            Some("lib_leaf,plugin_*,main_l?af"),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            calls(&r.trace),
            expect(&[
                ("lib_leaf", 2),
                ("plugin_entry", 2),
                ("plugin_leaf", 5),
                ("main_leaf", 2)
            ]),
            "graph: {graph}"
        );
    }
}

#[test]
fn threads_are_traced_each_with_its_own_stack() {
    let dir = scratch("threads");
    let rw = dir.join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let lib = build_lib(&dir, "preload_lib.c", "preload_lib");
    let exe = build_program(&dir, "preload_threads.c", "threads", &[]);
    rewrite(&lib, &rw.join("libpreload_lib.so"));
    rewrite(&exe, &rw.join("threads"));
    let exe = rw.join("threads");
    let base = run_untraced(&exe, &[], &rw);
    assert!(base.0.starts_with("total="), "{base:?}");
    let entry = record(&exe, &[], &rw, false, None);
    assert_eq!((entry.stdout.clone(), entry.code), base, "{}", entry.stderr);
    assert_eq!(
        calls(&entry.trace),
        expect(&[
            ("main", 1),
            ("thread_main", 3),
            ("work", 4500),
            ("leaf", 4500),
            ("lib_entry", 4500),
            ("lib_leaf", 9000),
        ])
    );
    assert!(!replay(&entry.trace, &["--summary"]).contains("lost"));
    let graph = record(&exe, &[], &rw, true, None);
    assert_eq!((graph.stdout.clone(), graph.code), base, "{}", graph.stderr);
    let paths = call_paths(&graph.trace);
    assert_eq!(
        paths.len(),
        4,
        "the main thread and three others: {paths:?}"
    );
    let per_thread = expect(&[
        ("thread_main", 1),
        ("thread_main;work", 1500),
        ("thread_main;work;leaf", 1500),
        ("thread_main;work;lib_entry", 1500),
        ("thread_main;work;lib_entry;lib_leaf", 3000),
    ]);
    let mut main_seen = false;
    for tree in paths.values() {
        if tree.contains_key("main") {
            assert_eq!(tree, &expect(&[("main", 1)]));
            main_seen = true;
        } else {
            assert_eq!(tree, &per_thread);
        }
    }
    assert!(main_seen);
}

#[test]
fn a_forked_child_traces_into_the_same_file() {
    let dir = scratch("fork");
    let rw = dir.join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let lib = build_lib(&dir, "preload_lib.c", "preload_lib");
    let exe = build_program(&dir, "preload_fork.c", "fork", &[]);
    rewrite(&lib, &rw.join("libpreload_lib.so"));
    rewrite(&exe, &rw.join("fork"));
    let exe = rw.join("fork");
    let base = run_untraced(&exe, &[], &rw);
    assert_eq!(base, ("child 60\nparent 6 child-status 0\n".to_string(), 0));
    for graph in [false, true] {
        let r = record(&exe, &[], &rw, graph, None);
        assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
        assert_eq!(
            calls(&r.trace),
            expect(&[
                ("main", 1),
                ("both", 1),
                ("parent_work", 3),
                ("child_work", 4),
                ("lib_entry", 4),
                ("lib_leaf", 8),
            ]),
            "graph: {graph}"
        );
        let text = replay(&r.trace, &[]);
        let threads: Vec<&str> = text.lines().filter(|l| l.starts_with("# thread")).collect();
        assert_eq!(threads.len(), 2, "{text}");
        assert!(
            threads.iter().any(|l| l.contains("forked from")),
            "the child's records are marked: {text}"
        );
        // In the uftrace export, the child is a task forked from the parent.
        let forked = threads
            .iter()
            .find_map(|l| l.strip_prefix("# thread ")?.strip_suffix(")"))
            .and_then(|l| l.split_once(" (a process forked from "))
            .unwrap();
        let (data, stderr) = export_uftrace(&r.trace, dir.join("fork.uftrace"));
        assert_eq!(stderr, "");
        let tasks = std::fs::read_to_string(data.join("task.txt")).unwrap();
        assert!(
            tasks.lines().any(|l| l.starts_with("FORK ")
                && l.ends_with(&format!(" pid={} ppid={}", forked.0, forked.1))),
            "{tasks}"
        );
        assert_eq!(uftrace_calls(&data), calls(&r.trace), "graph: {graph}");
        if graph {
            let paths = call_paths(&r.trace);
            let trees: Vec<&BTreeMap<String, u64>> = paths.values().collect();
            let parent = expect(&[("main", 1), ("main;both", 1), ("main;parent_work", 3)]);
            // The child goes on inside main, whose entry the parent recorded.
            let child = expect(&[
                ("child_work", 4),
                ("lib_entry", 4),
                ("lib_entry;lib_leaf", 8),
            ]);
            assert!(
                trees.contains(&&parent) && trees.contains(&&child),
                "{paths:?}"
            );
        }
    }
}

#[test]
fn a_program_without_a_table_is_refused_and_a_library_without_one_is_skipped() {
    let dir = scratch("notable");
    let lib = build_lib(&dir, "preload_lib.c", "preload_lib");
    let plugin = build_lib(&dir, "preload_plugin.c", "preload_plugin");
    let exe = build_program(&dir, "preload_main.c", "main", &[]);
    let plugin_arg = plugin.to_str().unwrap();
    // Not rewritten: refused before it runs.
    let r = record(&exe, &[plugin_arg], &dir, false, None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stdout.is_empty(),
        "the program must not run: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!(
            "record: {}: no __mcount_loc slot table, so nothing to trace: rewrite it with `padtrim rewrite --slot 4`",
            exe.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!r.trace.exists());
    // The program rewritten, its libraries not: they run untraced, and are counted.
    let rw_exe = dir.join("main.rw");
    rewrite(&exe, &rw_exe);
    let base = run_untraced(&rw_exe, &[plugin_arg], &dir);
    let r = record(&rw_exe, &[plugin_arg], &dir, false, None);
    assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
    assert_eq!(calls(&r.trace), expect(&[("main", 1), ("main_leaf", 2)]));
    for name in ["libpreload_lib.so", "libpreload_plugin.so"] {
        assert!(
            r.stderr.contains(&format!(
                "padtrim: module {}: no __mcount_loc table",
                lib.parent().unwrap().join(name).display()
            )),
            "{name}: {}",
            r.stderr
        );
    }
    let summary = summary_line(&r.stderr);
    assert_eq!(summary["traced"], "1");
    // libc and ld.so besides the library (the plugin is loaded after start-up).
    assert!(
        summary["without-table"].parse::<u32>().unwrap() >= 3,
        "{}",
        r.stderr
    );
}

/// The padtrim runtime built as a static library (`scripts/runtime-lib`).
fn runtime_lib() -> PathBuf {
    let out = Command::new(repo().join("scripts/runtime-lib"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    PathBuf::from(text(&out.stdout).lines().last().unwrap().trim())
}

#[test]
fn a_library_linked_with_the_runtime_is_traced_once_by_the_preloaded_copy() {
    let dir = scratch("linked");
    let rw = dir.join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    // The library carries the runtime (its descriptor is filled by the rewrite, with islands
    // possibly listed after its slots); the program does not.
    let lib = dir.join("libpreload_lib.so");
    let source = programs().join("preload_lib.c");
    // Four more (uncalled) pads, so the table always finds room (see preload_lib_more.c).
    let more = programs().join("preload_lib_more.c");
    let runtime = runtime_lib();
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    args.extend([
        os("-shared"),
        os("-fPIC"),
        source.as_os_str(),
        more.as_os_str(),
        runtime.as_os_str(),
        os("-o"),
        lib.as_os_str(),
    ]);
    gcc(&args);
    let plugin = build_lib(&dir, "preload_plugin.c", "preload_plugin");
    let exe = build_program(&dir, "preload_main.c", "main", &[]);
    for m in [&lib, &plugin, &exe] {
        rewrite(m, &rw.join(m.file_name().unwrap()));
    }
    let exe = rw.join("main");
    let plugin = rw.join("libpreload_plugin.so");
    let base = run_untraced(&exe, &[plugin.to_str().unwrap()], &rw);
    let r = record(&exe, &[plugin.to_str().unwrap()], &rw, true, None);
    assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
    assert!(
        r.stderr.contains("padtrim: linked runtime: the preloaded padtrim runtime traces this module; standing down"),
        "{}",
        r.stderr
    );
    let m = module_line(&r.stderr, "libpreload_lib.so");
    assert_eq!(m["linked-runtime"], "yes");
    assert_eq!(
        (&m["entries"][..], &m["patched"][..]),
        ("6", "6"),
        "{}",
        r.stderr
    );
    assert_eq!(
        calls(&r.trace),
        expect(&[
            ("main", 1),
            ("lib_entry", 1),
            ("lib_leaf", 2),
            ("plugin_entry", 2),
            ("plugin_leaf", 5),
            ("main_leaf", 2),
        ])
    );
}

#[test]
fn a_static_program_is_traced_by_its_linked_runtime_only() {
    let dir = scratch("static");
    let exe = dir.join("static");
    let source = programs().join("preload_plugin.c");
    let main = dir.join("static_main.c");
    std::fs::write(
        &main,
        "int plugin_entry(int);\nint main(void) { return plugin_entry(3) == 24 ? 0 : 1; }\n",
    )
    .unwrap();
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    args.extend([
        os("-static"),
        main.as_os_str(),
        source.as_os_str(),
        os("-o"),
        exe.as_os_str(),
    ]);
    gcc(&args);
    let rw = dir.join("static.rw");
    rewrite(&exe, &rw);
    // Without the runtime nothing can be preloaded into it: it runs, untraced.
    let r = record(&rw, &[], &dir, false, None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("it is not linked with the padtrim runtime"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("padtrim: preload"), "{}", r.stderr);
}

#[test]
fn slots_out_of_reach_of_every_stub_are_counted_and_the_rest_traced() {
    // ~3 MiB of text: stubs in the unused end of the text page and in a page below the
    // program reach the slots within 1 MiB of either end, not those in the middle.
    let dir = scratch("big");
    let gen = Command::new("sh")
        .arg(programs().join("big.c.sh"))
        .output()
        .unwrap();
    assert!(gen.status.success());
    let src = dir.join("big.c");
    std::fs::write(&src, gen.stdout).unwrap();
    let exe = dir.join("big");
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    args.extend([src.as_os_str(), os("-o"), exe.as_os_str()]);
    gcc(&args);
    let rw = dir.join("big.rw");
    rewrite(&exe, &rw);
    let base = run_untraced(&rw, &[], &dir);
    let r = record(&rw, &[], &dir, false, None);
    assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
    let m = module_line(&r.stderr, "big.rw");
    let n = |k: &str| m[k].parse::<u64>().unwrap();
    assert_eq!(n("entries"), 49);
    assert_eq!(n("patched") + n("unreachable"), 49, "{}", r.stderr);
    assert!(n("unreachable") > 0 && n("patched") > 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "padtrim: warning: {}: {} slots out of jal reach of any stub",
            rw.display(),
            n("unreachable")
        )),
        "{}",
        r.stderr
    );
    // main calls each bigN once: exactly the patched functions appear, once each.
    let c = calls(&r.trace);
    assert_eq!(c.len() as u64, n("patched"), "{c:?}");
    assert!(c.values().all(|&k| k == 1), "{c:?}");
}

#[test]
fn dlopen_searches_the_calling_modules_runpath_as_without_the_runtime() {
    // The program finds its plugin (a bare name) and its library through its own DT_RUNPATH
    // ($ORIGIN): glibc must still see the program, not the preloaded runtime, as the caller.
    let dir = scratch("runpath");
    let rw = dir.join("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let lib = build_lib(&dir, "preload_lib.c", "preload_lib");
    let plugin = build_lib(&dir, "preload_plugin.c", "preload_plugin");
    let exe = build_program(&dir, "preload_main.c", "main", &["-Wl,-rpath,$ORIGIN"]);
    for m in [&lib, &plugin, &exe] {
        rewrite(m, &rw.join(m.file_name().unwrap()));
    }
    let exe = rw.join("main");
    let nowhere = dir.join("empty");
    std::fs::create_dir_all(&nowhere).unwrap();
    let base = run_untraced(&exe, &["libpreload_plugin.so"], &nowhere);
    assert_eq!(base, ("a=15 b=39 c=9\n".to_string(), 0));
    for graph in [false, true] {
        let r = record(&exe, &["libpreload_plugin.so"], &nowhere, graph, None);
        assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
        assert_eq!(
            calls(&r.trace),
            expect(&[
                ("main", 1),
                ("lib_entry", 1),
                ("lib_leaf", 2),
                ("plugin_entry", 2),
                ("plugin_leaf", 5),
                ("main_leaf", 2),
            ])
        );
    }
}

#[test]
fn programs_it_executes_do_not_inherit_the_runtime() {
    let dir = scratch("exec");
    let src = programs().join("preload_exec.c");
    let exe = dir.join("exec");
    let mut args: Vec<&std::ffi::OsStr> = PADS.iter().map(|s| os(s)).collect();
    args.extend([src.as_os_str(), os("-o"), exe.as_os_str()]);
    gcc(&args);
    let rw = dir.join("exec.rw");
    rewrite(&exe, &rw);
    let base = run_untraced(&rw, &[], &dir);
    assert_eq!(base, ("child LD_PRELOAD=[]\na=2 r=0 b=4\n".to_string(), 0));
    let r = record(&rw, &[], &dir, false, None);
    assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
    assert!(!r.stderr.contains("LD_PRELOAD"), "{}", r.stderr);
    assert_eq!(
        calls(&r.trace),
        expect(&[("main", 1), ("before", 1), ("after", 1)])
    );
}

#[test]
fn cxx_exceptions_unwind_through_hooked_frames_of_the_preloaded_runtime() {
    // The preloaded library's _Unwind_* entry points come before libgcc's: they put the real
    // return addresses back before an exception unwinds through graph-mode return hooks.
    let dir = scratch("cxx");
    let exe = dir.join("exc");
    let out = Command::new("clang++")
        .args(["--target=riscv64-linux-gnu", "-march=rv64gc", "-O1"])
        .args(["-fpatchable-function-entry=8", "-Wl,-q"])
        .arg(programs().join("exc.cc"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rw = dir.join("exc.rw");
    rewrite(&exe, &rw);
    let base = run_untraced(&rw, &[], &dir);
    assert_eq!(base, ("caught too big\na=2 b=-1 after=3\n".to_string(), 0));
    let r = record(&rw, &[], &dir, true, None);
    assert_eq!((r.stdout.clone(), r.code), base, "{}", r.stderr);
    assert_eq!(
        calls(&r.trace),
        expect(&[
            ("main", 1),
            ("_Z7catcheri", 2),
            ("_Z6middlei", 2),
            ("_Z7throweri", 2),
            ("_Z5afteri", 1),
        ])
    );
}

/// Stacks and their weights from `replay --format folded`.
fn folded(trace: &Path) -> BTreeMap<String, u64> {
    replay(trace, &["--format", "folded"])
        .lines()
        .map(|l| {
            let (stack, w) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), w.parse().unwrap())
        })
        .collect()
}

/// Run `uftrace CMD -d DIR`; its stdout (it must succeed). uftrace is Debian's package,
/// installed by scripts/setup.
fn uftrace(cmd: &str, dir: &Path) -> String {
    let out = Command::new("uftrace")
        .arg(cmd)
        .arg("-d")
        .arg(dir)
        .output()
        .expect("run uftrace (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "uftrace {cmd} -d {}: {}",
        dir.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `replay TRACE --format uftrace -o DIR` into a fresh DIR, which must succeed: DIR and
/// what replay said on stderr.
fn export_uftrace(trace: &Path, dir: PathBuf) -> (PathBuf, String) {
    let _ = std::fs::remove_dir_all(&dir);
    let out = padtrim(&[
        "replay",
        trace.to_str().unwrap(),
        "--format",
        "uftrace",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    (dir, text(&out.stderr))
}

/// Calls per function in `uftrace report` ("  %10s  %10s  %10lu  %s": total, self, calls,
/// function).
fn uftrace_calls(dir: &Path) -> BTreeMap<String, u64> {
    uftrace("report", dir)
        .lines()
        .skip(2)
        .map(|l| (l[38..].to_string(), l[24..36].trim().parse().unwrap()))
        .collect()
}

/// The mapped paths of a uftrace data directory's session map.
fn uftrace_maps(dir: &Path) -> Vec<String> {
    let map = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "map"))
        .expect("a sid-*.map file");
    std::fs::read_to_string(map)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap().to_string())
        .collect()
}

#[test]
fn every_format_and_the_uftrace_export_name_library_functions() {
    let dir = scratch("formats");
    let (exe, plugin) = build_main(&dir);
    let rw = exe.parent().unwrap();
    let plugin_arg = plugin.to_str().unwrap();
    let every_call = expect(&[
        ("main", 1),
        ("lib_entry", 1),
        ("lib_leaf", 2),
        ("plugin_entry", 2),
        ("plugin_leaf", 5),
        ("main_leaf", 2),
    ]);
    let entry = record(&exe, &[plugin_arg], rw, false, None);
    assert_eq!(entry.code, 0, "{}", entry.stderr);
    assert_eq!(
        folded(&entry.trace),
        expect(&[
            ("main", 1),
            ("main;lib_entry", 1),
            ("main;lib_entry;lib_leaf", 2),
            ("main;plugin_entry", 2),
            ("main;plugin_entry;plugin_leaf", 5),
            ("main;main_leaf", 2),
        ])
    );
    let graph = record(&exe, &[plugin_arg], rw, true, None);
    assert_eq!(graph.code, 0, "{}", graph.stderr);
    let stacks: Vec<String> = folded(&graph.trace).into_keys().collect();
    assert_eq!(
        stacks,
        [
            "main",
            "main;lib_entry",
            "main;lib_entry;lib_leaf",
            "main;main_leaf",
            "main;plugin_entry",
            "main;plugin_entry;plugin_leaf"
        ]
    );

    // uftrace: a map line and a .sym file per library (the plugin loaded twice is one),
    // read without the RISC-V files at hand.
    for (r, name) in [(&entry, "entry.uftrace"), (&graph, "graph.uftrace")] {
        let (data, stderr) = export_uftrace(&r.trace, dir.join(name));
        assert_eq!(stderr, "");
        let maps = uftrace_maps(&data);
        let lib = rw.join("libpreload_lib.so");
        assert_eq!(
            maps,
            [
                exe.to_str().unwrap(),
                lib.to_str().unwrap(),
                plugin_arg,
                "[stack]"
            ]
        );
        for sym in [
            "main.sym",
            "libpreload_lib.so.sym",
            "libpreload_plugin.so.sym",
        ] {
            assert!(data.join(sym).is_file(), "{sym}");
        }
        let hidden = dir.join("rw.hidden");
        std::fs::rename(rw, &hidden).unwrap();
        let report = uftrace_calls(&data);
        let replayed = uftrace("replay", &data);
        std::fs::rename(&hidden, rw).unwrap();
        assert_eq!(report, every_call, "{name}");
        assert!(
            replayed.contains("|   lib_entry() {") && replayed.contains("|     plugin_leaf();"),
            "{replayed}"
        );
    }

    // Two libraries with one file name: the plugin loaded from another directory under the
    // library's name gets the second .sym name uftrace looks for.
    let sub = rw.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let clash = sub.join("libpreload_lib.so");
    std::fs::copy(&plugin, &clash).unwrap();
    let r = record(&exe, &[clash.to_str().unwrap()], rw, true, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (data, stderr) = export_uftrace(&r.trace, dir.join("clash.uftrace"));
    assert_eq!(stderr, "");
    let syms: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libpreload_lib.so-") && n.ends_with(".sym"))
        .collect();
    assert_eq!(syms.len(), 1, "{syms:?}");
    assert_eq!(uftrace_calls(&data), every_call);

    // A library that is gone: a warning, and its functions as offsets in every format.
    std::fs::remove_file(&clash).unwrap();
    let out = padtrim(&["replay", r.trace.to_str().unwrap(), "--format", "folded"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "warning: {}: cannot read {}, traced in it",
            r.trace.display(),
            clash.display()
        )),
        "{}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("main;lib_entry;lib_leaf ")
            && stdout.contains("main;libpreload_lib.so+0x")
            && !stdout.contains("plugin_"),
        "{stdout}"
    );
    let (data, stderr) = export_uftrace(&r.trace, dir.join("gone.uftrace"));
    assert!(
        stderr.contains("its functions are shown as offsets"),
        "{stderr}"
    );
    let calls = uftrace_calls(&data);
    let mut offsets: Vec<u64> = calls
        .iter()
        .filter(|(k, _)| k.starts_with("libpreload_lib.so+0x"))
        .map(|(_, &n)| n)
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [2, 5], "plugin_entry and plugin_leaf: {calls:?}");
    assert_eq!((calls["lib_entry"], calls["lib_leaf"]), (1, 2));
}

#[test]
fn arguments_and_return_values_are_recorded_in_shared_library_modules() {
    let dir = scratch("args");
    let (exe, plugin) = build_main(&dir);
    let rw = exe.parent().unwrap();
    let trace = exe.with_extension("args.trace");
    // Through the environment, as `padtrim record` passes it on (PADTRIM_ARGS).
    let out = Command::new(env!("CARGO_BIN_EXE_padtrim"))
        .args(["record", "--graph", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&exe)
        .arg(&plugin)
        .env("LD_LIBRARY_PATH", rw)
        .env(
            "PADTRIM_ARGS",
            "lib_leaf@arg1,retval;plugin_*,!plugin_entry@arg1,retval;plugin_entry@arg1;main_leaf@arg1",
        )
        .output()
        .unwrap();
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("a=15 b=39 c=9\n".to_string(), Some(0)),
        "{}",
        text(&out.stderr)
    );
    let lines: Vec<String> = replay(&trace, &[])
        .lines()
        .filter_map(|l| l.split_once('|').map(|(_, call)| call.trim().to_string()))
        .collect();
    // lib_leaf(x) = 3x, plugin_leaf(x) = x + 7, plugin_entry(n) sums plugin_leaf(0..n).
    for want in [
        "lib_entry() {",
        "lib_leaf(2) = 6;",
        "lib_leaf(3) = 9;",
        "} /* lib_entry */",
        "plugin_entry(3) {",
        "plugin_leaf(0) = 7;",
        "plugin_leaf(2) = 9;",
        "plugin_entry(2) {",
        "plugin_leaf(1) = 8;",
        "main_leaf(5);",
        "main_leaf(6);",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:#?}");
    }
    // Every call of the selected functions carries its fields, and no other call has any.
    let count = |pat: &str| lines.iter().filter(|l| l.starts_with(pat)).count();
    assert_eq!(count("plugin_leaf("), 5);
    assert_eq!(count("plugin_leaf() "), 0);
    assert_eq!(count("lib_leaf("), 2);
    assert_eq!(count("main() {"), 1);
    // uftrace's own replay of the export shows the same lines.
    let (u, _) = export_uftrace(&trace, dir.join("args.uftrace"));
    let mut theirs: Vec<String> = uftrace("replay", &u)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('|').map(|(_, call)| call.trim().to_string()))
        .collect();
    let mut ours: Vec<String> = lines
        .iter()
        .filter(|l| *l != "FUNCTION CALLS")
        .cloned()
        .collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);
}
