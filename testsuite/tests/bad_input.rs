//! Unusable input: every padtrim command must exit 2 with one line on stderr naming the
//! file, and never panic.

use std::path::{Path, PathBuf};

use padtrim_testsuite::binutils;
use padtrim_testsuite::{artifact, check, padtrim, program_without_table, scratch_dir};

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The report commands every bad input is fed to.
const REPORTS: [&[&str]; 2] = [&["report", "--json"], &["report"]];
/// Report commands plus the CI gate.
const ALL: [&[&str]; 3] = [
    &["report", "--json"],
    &["report"],
    &["check", "--max-pad", "16"],
];

/// Runs each of `commands` on `path` and asserts the unusable-input contract: exit 2, one
/// line on stderr naming the file, no panic.
fn assert_unusable_for(path: &Path, why: &str, commands: &[&[&str]]) {
    let path_text = path.to_string_lossy().into_owned();
    for &args in commands {
        let out = padtrim()
            .args(args)
            .arg(path)
            .output()
            .expect("run padtrim");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("padtrim {} {path_text} ({why})", args.join(" "));
        assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: status {}, stderr:\n{stderr}",
            out.status
        );
        let message = stderr.trim_end_matches('\n');
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{what}: stderr is not one line:\n{stderr}"
        );
        assert!(
            message.contains(&path_text),
            "{what}: stderr does not name the file: {message}"
        );
    }
}

/// [`assert_unusable_for`] with `report --json`, `report` and `check`.
fn assert_unusable(path: &Path, why: &str) {
    assert_unusable_for(path, why, &ALL);
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write test input");
    path
}

#[test]
fn empty_file() {
    let dir = scratch_dir("bad_input_empty");
    assert_unusable(&write(&dir, "empty", &[]), "empty file");
}

#[test]
fn truncated_elf() {
    let dir = scratch_dir("bad_input_truncated");
    let program =
        std::fs::read(&artifact("basic-rv64gc-p8-O2-pie").path).expect("read corpus program");
    assert_unusable(
        &write(&dir, "first-100-bytes", &program[..100]),
        "first 100 bytes",
    );
    assert_unusable(
        &write(&dir, "first-half", &program[..program.len() / 2]),
        "first half",
    );
}

#[test]
fn elf_for_another_machine() {
    assert_unusable(Path::new("/bin/ls"), "x86-64 ELF");
}

#[test]
fn riscv_elf_without_a_table() {
    assert_unusable(
        &program_without_table().path,
        "no __patchable_function_entries",
    );
}

#[test]
fn table_entry_outside_text() {
    let dir = scratch_dir("bad_input_outside_text");
    let source = artifact("basic-rv64gc-p8-O0-nopie");
    let table = binutils::sections(&source.path)
        .into_iter()
        .find(|s| s.name == binutils::TABLE_SECTION)
        .expect("no-pie corpus program has a table");
    let mut bytes = std::fs::read(&source.path).expect("read corpus program");
    // In a non-PIE program the table holds absolute addresses in the file itself.
    let first = table.offset as usize;
    bytes[first..first + 8].copy_from_slice(&0x10u64.to_le_bytes());
    let path = write(&dir, "entry-at-0x10", &bytes);
    // Make sure the corruption is visible to binutils as intended.
    assert_eq!(binutils::pad_table(&path)[0].address, 0x10);
    assert_unusable_for(&path, "table entry 0x10", &REPORTS);

    // `check` counts invalid entries as a finding (exit 1) unless told to allow them.
    let out = check(&path, &["--max-pad", "16"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "check panicked:\n{text}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "check on an invalid entry:\n{text}"
    );
    assert!(
        text.contains("0x10"),
        "check does not name the invalid entry:\n{text}"
    );
    let out = check(&path, &["--max-pad", "16", "--allow-invalid-entries"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check --allow-invalid-entries: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn random_bytes_with_and_without_elf_magic() {
    let dir = scratch_dir("bad_input_random");
    assert_unusable(
        &write(&dir, "random", &random_bytes(0x9e37_79b9_7f4a_7c15, 4096)),
        "random bytes",
    );
    let mut fake = random_bytes(42, 4096);
    fake[..4].copy_from_slice(b"\x7fELF");
    assert_unusable(
        &write(&dir, "random-with-magic", &fake),
        "ELF magic then random bytes",
    );
}

#[test]
fn nonexistent_path_and_directory() {
    let dir = scratch_dir("bad_input_missing");
    assert_unusable(&dir.join("does-not-exist"), "missing file");
    assert_unusable(&dir, "a directory");
}
