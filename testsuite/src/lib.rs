//! padtrim-testsuite: end-to-end tests over real RISC-V programs built at test time.
//!
//! The corpus (C/C++ sources in `testsuite/corpus/`, plus one generated file) is compiled with
//! `riscv64-linux-gnu-gcc`, `-g++` and `clang++ --target=riscv64-linux-gnu` over a matrix of
//! `-march`, `-fpatchable-function-entry`, optimisation and linkage options (see
//! `src/matrix.rs`), once per process and cached across runs in
//! `<target dir>/padtrim-corpus/`. Every linked artifact keeps its relocations (`-Wl,-q`).
//! Run `scripts/setup` first to install the cross toolchain, qemu-user and clang.
//!
//! Helpers: [`corpus`] (the artifacts), [`run_qemu`], [`padtrim`] (the CLI under test) and
//! its commands ([`check`], [`rewrite`], [`verify`], [`report_json`], [`save_baseline`]),
//! [`describe`] for assertion messages, [`rewrite_json`], [`rewrite_stats`] and
//! [`same_behaviour`] for rewrites, [`scratch_dir`], and the [`binutils`] parsers.

pub mod artifact;
pub mod binutils;
mod build;
pub mod generate;
mod matrix;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use artifact::{Artifact, ArtifactKind, Compiler, Linkage};

/// Sysroot qemu-riscv64 uses to find the dynamic loader and libc (`-L`).
pub const RISCV_SYSROOT: &str = "/usr/riscv64-linux-gnu";
/// Longest a program may run under qemu before [`run_qemu`] gives up.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(60);

/// The cargo target directory the running test binary lives in (`target/`), from
/// `current_exe` = `<target>/<profile>/deps/<test>`; falls back to `$CARGO_TARGET_DIR`, then
/// to the system temp dir.
pub fn target_dir() -> PathBuf {
    if let Some(profile) = profile_dir() {
        if let Some(target) = profile.parent() {
            return target.to_path_buf();
        }
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// `<target>/<profile>` of the running test executable (`None` if not run from `deps/`).
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.to_path_buf())
}

/// Every corpus artifact (built on first call, cached on disk). Panics with a clear message
/// if the cross toolchain is missing or a build fails.
pub fn corpus() -> &'static [Artifact] {
    static CORPUS: OnceLock<Vec<Artifact>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut specs = matrix::corpus_specs();
        specs.push(matrix::without_table_spec());
        let mut all = build::build_all(&specs, &target_dir().join("padtrim-corpus"));
        let untabled = all.pop().expect("without-table artifact");
        WITHOUT_TABLE.set(untabled).expect("corpus built once");
        all
    })
}

static WITHOUT_TABLE: OnceLock<Artifact> = OnceLock::new();

/// A RISC-V program (`basic.c`, rv64gc, -O2, non-PIE, `-Wl,-q`) built *without*
/// `-fpatchable-function-entry`, so it has no `__patchable_function_entries`. Not part of
/// [`corpus`].
pub fn program_without_table() -> &'static Artifact {
    corpus();
    WITHOUT_TABLE.get().expect("built with the corpus")
}

/// The corpus artifact called `name`; panics if there is none.
pub fn artifact(name: &str) -> &'static Artifact {
    corpus()
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no corpus artifact named {name:?}"))
}

/// Runs a riscv64 Linux program under `qemu-riscv64 -L /usr/riscv64-linux-gnu`, passing
/// `env` with `-E NAME=VALUE` (use `("LD_LIBRARY_PATH", dir)` for shared libraries) and
/// `args` to the program. Captures stdout and stderr; panics if qemu is missing or the
/// program runs longer than [`QEMU_TIMEOUT`].
pub fn run_qemu(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("qemu-riscv64");
    cmd.arg("-L").arg(RISCV_SYSROOT);
    for (k, v) in env {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    cmd.arg(path).args(args);
    run_with_timeout(cmd, QEMU_TIMEOUT)
}

/// Runs a freestanding riscv32 Linux program under `qemu-riscv32` (no sysroot: Debian ships
/// no rv32 C library). Captures stdout and stderr, like [`run_qemu`].
pub fn run_qemu_rv32(path: &Path) -> Output {
    let mut cmd = Command::new("qemu-riscv32");
    cmd.arg(path);
    run_with_timeout(cmd, QEMU_TIMEOUT)
}

/// Runs `cmd` to completion with captured output and asserts that it succeeded; `what`
/// names it in the messages (with its stderr). Returns its output.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command to completion with captured output, killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e} (run scripts/setup)"));
    // Drain both pipes on threads so a chatty program cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// A `Command` for the padtrim CLI under test: `$PADTRIM_BIN` if set, else `padtrim` in the
/// profile directory of the running test executable (`target/<profile>/padtrim`). Panics
/// if it does not exist, saying how to build it.
pub fn padtrim() -> Command {
    Command::new(padtrim_path())
}

/// Path of the padtrim CLI binary (see [`padtrim`]).
pub fn padtrim_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("PADTRIM_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "PADTRIM_BIN={} does not exist",
            bin.display()
        );
        return bin;
    }
    let candidate = profile_dir().map(|p| p.join("padtrim"));
    match candidate {
        Some(path) if path.is_file() => path,
        other => panic!(
            "padtrim CLI not found{}: build it first: cargo build -p padtrim-cli",
            other
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default()
        ),
    }
}

/// A fresh, empty directory for one test's output files:
/// `<target dir>/padtrim-scratch/<test_name>/`.
pub fn scratch_dir(test_name: &str) -> PathBuf {
    let dir = target_dir().join("padtrim-scratch").join(test_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Runs `padtrim report --json FILE`, asserts exit status 0, and returns the parsed object.
pub fn report_json(path: &Path) -> serde_json::Value {
    let out = report_json_output(path);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "padtrim report --json {} printed invalid JSON: {e}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `padtrim report --json FILE` and asserts exit status 0.
fn report_json_output(path: &Path) -> Output {
    let out = padtrim()
        .arg("report")
        .arg("--json")
        .arg(path)
        .output()
        .expect("run padtrim");
    assert!(
        out.status.success(),
        "padtrim report --json {} exited with {}: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `padtrim ARGS FILE` and returns what it did (any exit status).
pub fn run_padtrim(args: &[&str], file: &Path) -> Output {
    padtrim()
        .args(args)
        .arg(file)
        .output()
        .expect("run padtrim")
}

/// Exit status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `padtrim check FILE ARGS...`.
pub fn check(file: &Path, args: &[&str]) -> Output {
    padtrim()
        .arg("check")
        .arg(file)
        .args(args)
        .output()
        .expect("run padtrim check")
}

/// Runs `padtrim rewrite INPUT -o OUTPUT ARGS...`.
pub fn rewrite(input: &Path, output: &Path, args: &[&str]) -> Output {
    padtrim()
        .arg("rewrite")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(args)
        .output()
        .expect("run padtrim rewrite")
}

/// Runs `padtrim verify ORIGINAL REWRITTEN ARGS...`.
pub fn verify(original: &Path, rewritten: &Path, args: &[&str]) -> Output {
    padtrim()
        .arg("verify")
        .arg(original)
        .arg(rewritten)
        .args(args)
        .output()
        .expect("run padtrim verify")
}

/// Saves `padtrim report --json FILE` at `to`, for `--baseline`; asserts that the report
/// succeeded.
pub fn save_baseline(file: &Path, to: &Path) {
    let out = report_json_output(file);
    std::fs::write(to, &out.stdout).expect("write baseline");
}

/// Runs `padtrim rewrite INPUT -o OUTPUT --json`, asserts that it succeeded, and returns
/// the statistics it printed.
pub fn rewrite_json(input: &Path, output: &Path) -> serde_json::Value {
    let rw = rewrite(input, output, &["--json"]);
    assert!(
        rw.status.success(),
        "rewrite {}: {}",
        input.display(),
        describe(&rw)
    );
    serde_json::from_slice(&rw.stdout).expect("rewrite --json prints JSON")
}

/// What `rewrite --json` (run as `rw`) printed, checked to hold every statistic it
/// promises; the error says which is missing, or why it is not JSON.
pub fn rewrite_stats(rw: &Output) -> Result<serde_json::Value, String> {
    let stats: serde_json::Value =
        serde_json::from_slice(&rw.stdout).map_err(|e| format!("bad JSON: {e}"))?;
    for key in [
        "sites",
        "bytes_removed",
        "file_size_before",
        "file_size_after",
        "text_size_before",
        "text_size_after",
        "alignment_bytes",
        "unrelocated_fixups",
    ] {
        if stats.get(key).is_none() {
            return Err(format!("rewrite --json lacks {key}"));
        }
    }
    Ok(stats)
}

/// The rewritten program behaved as the original did: the same stdout, stderr and exit
/// status; the error describes both runs.
pub fn same_behaviour(original: &Output, rewritten: &Output) -> Result<(), String> {
    if original.stdout != rewritten.stdout
        || original.stderr != rewritten.stderr
        || original.status.code() != rewritten.status.code()
    {
        return Err(format!(
            "behaviour differs\noriginal: {}\nrewritten: {}",
            describe(original),
            describe(rewritten)
        ));
    }
    Ok(())
}

/// `padtrim ARGS`, asserting success.
pub fn padtrim_ok(args: &[&std::ffi::OsStr]) -> Output {
    let out = padtrim().args(args).output().expect("run padtrim");
    assert!(out.status.success(), "padtrim {args:?}: {}", describe(&out));
    out
}

/// The `__mcount_loc` entries of `path` (4 or 8 bytes each, as its ELF class), in table
/// order; `None` when it has no such section.
pub fn mcount_entries(path: &Path) -> Option<Vec<u64>> {
    let table = binutils::sections(path)
        .into_iter()
        .find(|s| s.name == "__mcount_loc")?;
    // ELFCLASS32 files hold 4-byte entries.
    let elf32 = std::fs::read(path).expect("read the file").get(4) == Some(&1);
    let width = if elf32 { 4 } else { 8 };
    Some(
        binutils::section_data(path, &table)
            .chunks(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// The entries of the non-allocated `__patchable_function_entries` that `padtrim rewrite
/// --insert` adds to `path` (one per slot, like a compacted file's table), in table order;
/// `None` when it has none. Asserts what makes it harmless to the loaded image and readable
/// to tools: `PROGBITS`, no flags (not allocated), no address, pointer-aligned entries.
pub fn inserted_patch_entries(path: &Path) -> Option<Vec<u64>> {
    let table = binutils::sections(path)
        .into_iter()
        .find(|s| s.name == binutils::TABLE_SECTION && !s.flags.contains('A'))?;
    let width = binutils::header(path).pointer_size();
    assert_eq!(table.kind, "PROGBITS", "{}: {table:?}", path.display());
    assert_eq!(
        table.flags,
        "",
        "{}: not allocated: {table:?}",
        path.display()
    );
    assert_eq!(
        table.address,
        0,
        "{}: no address: {table:?}",
        path.display()
    );
    assert_eq!(table.align, width, "{}: {table:?}", path.display());
    assert_eq!(table.size % width, 0, "{}: {table:?}", path.display());
    Some(
        binutils::section_data(path, &table)
            .chunks(width as usize)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// Calls per function in `padtrim replay TRACE --elf EXE --summary`; functions a compiler
/// cloned (`fib.part.0`, `fib.constprop.0`) count under their source name.
pub fn replay_call_counts(trace: &Path, exe: &Path) -> std::collections::BTreeMap<String, u64> {
    let out = padtrim_ok(&[
        "replay".as_ref(),
        trace.as_os_str(),
        "--elf".as_ref(),
        exe.as_os_str(),
        "--summary".as_ref(),
    ]);
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(n), Some(name)) = (f.first().and_then(|n| n.parse::<u64>().ok()), f.last())
        else {
            continue;
        };
        let name = name.split('.').next().unwrap_or(name).to_string();
        *counts.entry(name).or_insert(0) += n;
    }
    counts
}

/// `padtrim record -o TRACE [--graph] -- EXE` (any exit status: record passes the program's
/// own on).
pub fn record_trace(trace: &Path, exe: &Path, graph: bool) -> Output {
    let mut cmd = padtrim();
    cmd.arg("record").arg("-o").arg(trace);
    if graph {
        cmd.arg("--graph");
    }
    cmd.arg("--").arg(exe).output().expect("run padtrim record")
}

/// Asserts the same stdout and exit status (an inserted or rewritten program against its
/// original; stderr may differ).
pub fn assert_same_output(original: &Output, inserted: &Output, what: &str) {
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
