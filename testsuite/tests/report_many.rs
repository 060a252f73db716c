//! `padtrim report` and `padtrim check` on many files and directories at once: directories
//! are walked (files that are not RISC-V ELF files with a patch table skipped and counted),
//! the total is the sum of the single reports, `check` exits with the worst file's status
//! and names the file in every finding, and a many-file report is a baseline matched by path.

use std::path::{Path, PathBuf};
use std::process::Output;

use padtrim_testsuite::describe;
use padtrim_testsuite::{artifact, padtrim, program_without_table, report_json, scratch_dir};
use serde_json::Value;

/// Corpus files copied into the tree, as (artifact, path under the tree).
const FILES: &[(&str, &str)] = &[
    ("basic-rv64gc-p8-O2-pie", "basic"),
    ("control-rv64gc-p4-O2-static", "bin/control"),
    ("basic-rv64gc-p8_2-O2-nopie-ffs-obj", "obj/basic.o"),
    ("cxx-clang-rv64gc-p8-O2-pie-obj", "obj/deep/cxx.o"),
    ("basic-rv64g-p1-O2-nopie", "bin/g1"),
];

/// A build tree: the corpus files of [`FILES`] and, to be skipped, two files that are not
/// ELF (text, empty), an ELF file for another machine (this test's own executable) and a
/// RISC-V program without a patch table. Returns the tree and its corpus files' paths, in
/// the order a walk finds them (by name).
fn tree(name: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = scratch_dir(&format!("report-many-{name}"));
    let root = dir.join("build");
    let mut files = Vec::new();
    for (a, rel) in FILES {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&artifact(a).path, &path).expect("copy corpus file");
        files.push(path);
    }
    std::fs::write(root.join("README.txt"), "not an ELF file\n").expect("write");
    std::fs::write(root.join("obj/empty"), "").expect("write");
    let host = std::env::current_exe().expect("test executable");
    std::fs::copy(host, root.join("bin/host-tool")).expect("copy host ELF");
    std::fs::copy(&program_without_table().path, root.join("bin/untabled")).expect("copy");
    files.sort();
    (root, files)
}

fn run(args: &[&str], paths: &[&Path]) -> Output {
    padtrim()
        .args(args)
        .args(paths)
        .output()
        .expect("run padtrim")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", describe(out)))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_directory_reports_each_elf_file_and_totals_are_the_sum_of_single_reports() {
    let (root, files) = tree("totals");
    let out = run(&["report", "--json"], &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let many = json(&out);
    let reports = many["files"].as_array().expect("files array");
    let singles: Vec<Value> = files.iter().map(|f| report_json(f)).collect();
    // Each file's report is its single report, in walk order.
    assert_eq!(reports.len(), files.len(), "{many:#}");
    for (r, single) in reports.iter().zip(&singles) {
        assert_eq!(
            r, single,
            "the many-file report of {} differs",
            single["file"]
        );
    }
    let total = &many["total"];
    let sum = |key: &str| -> i64 { singles.iter().map(|s| s[key].as_i64().expect(key)).sum() };
    for key in [
        "sites",
        "pad_bytes_total",
        "projected_saving_bytes",
        "projected_alignment_bytes",
        "text_bytes",
        "zero_entries",
        "invalid_entries",
    ] {
        assert_eq!(
            total[key].as_i64(),
            Some(sum(key)),
            "total {key}: {total:#}"
        );
    }
    let usable: usize = singles
        .iter()
        .map(|s| s["functions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(total["usable_sites"].as_u64(), Some(usable as u64));
    let mut histogram = std::collections::BTreeMap::<String, u64>::new();
    for s in &singles {
        for (size, n) in s["histogram"].as_object().expect("histogram") {
            *histogram.entry(size.clone()).or_default() += n.as_u64().expect("count");
        }
    }
    let total_histogram: std::collections::BTreeMap<String, u64> = total["histogram"]
        .as_object()
        .expect("histogram")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect();
    assert_eq!(total_histogram, histogram);
    assert!(
        histogram.len() >= 3,
        "the files differ in pad size: {histogram:?}"
    );
    let share = total["pad_bytes_total"].as_f64().expect("pad bytes")
        / total["text_bytes"].as_f64().expect("text");
    assert!((total["pad_share_of_text"].as_f64().expect("share") - share).abs() < 1e-12);
    assert_eq!(total["files"], files.len());
    assert_eq!(total["errors"], 0);
    assert_eq!(
        total["skipped"],
        serde_json::json!({"not_elf": 2, "other_machine": 1, "no_table": 1}),
        "{total:#}"
    );
    // The same files named one by one, with the directory's skipped files absent.
    let named: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = run(&["report", "--json"], &named);
    let again = json(&out);
    assert_eq!(again["files"], many["files"]);
    assert_eq!(again["total"]["sites"], total["sites"]);
    assert_eq!(again["total"]["skipped"]["not_elf"], 0);
}

#[test]
fn the_text_report_has_each_file_and_a_total_and_one_file_stays_a_single_report() {
    let (root, files) = tree("text");
    let out = run(&["report"], &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    for f in &files {
        assert!(
            text.contains(&format!("{}: elf", f.display())),
            "no report of {}:\n{text}",
            f.display()
        );
    }
    assert!(
        text.contains(
            "total: 5 files, 4 skipped (2 not ELF, 1 for another machine, 1 without a patch table)"
        ),
        "{text}"
    );
    let sites: u64 = files
        .iter()
        .map(|f| report_json(f)["sites"].as_u64().expect("sites"))
        .sum();
    let all = text
        .lines()
        .find(|l| l.trim_start().starts_with("(all)"))
        .unwrap_or_else(|| panic!("no (all) row:\n{text}"));
    assert_eq!(
        all.split_whitespace().nth(1),
        Some(sites.to_string().as_str()),
        "{all}"
    );
    assert!(
        text.contains(&format!("sites: {sites}   pad bytes: ")),
        "{text}"
    );

    // CSV: the file is the first column of every row.
    let out = run(&["report", "--csv"], &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let csv = stdout(&out);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("file,function,section,")),
        "{csv}"
    );
    let rows: Vec<&str> = lines.collect();
    let usable: usize = files
        .iter()
        .map(|f| report_json(f)["functions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(rows.len(), usable);
    for f in &files {
        let prefix = format!("{},", f.display());
        assert!(
            rows.iter().any(|r| r.starts_with(&prefix)),
            "{prefix}: {csv}"
        );
    }

    // One file (not a directory) is the single report it always was: no total, no files.
    let one = run(&["report"], &[&files[0]]);
    assert!(!stdout(&one).contains("total:"), "{}", describe(&one));
    let one = run(&["report", "--json"], &[&files[0]]);
    let v = json(&one);
    assert!(v.get("files").is_none() && v.get("total").is_none());
    assert_eq!(v, report_json(&files[0]));
    // A directory holding one file is many files: the total is there.
    let single_dir = root.join("obj/deep");
    let out = run(&["report", "--json"], &[&single_dir]);
    assert_eq!(json(&out)["total"]["files"], 1, "{}", describe(&out));
}

#[test]
fn named_files_must_be_usable_and_the_others_are_still_reported() {
    let (root, files) = tree("named");
    let text = root.join("README.txt");
    let out = run(&["report"], &[&files[0], &text, &files[1]]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("padtrim: {}: ", text.display()))),
        "{stderr}"
    );
    let report = stdout(&out);
    assert!(report.contains("total: 2 files, 1 unusable"), "{report}");
    // Named again inside a walked directory: still named, still an error.
    let out = run(&["report", "--json"], &[&root, &text]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v = json(&out);
    assert_eq!(v["total"]["files"], files.len());
    assert_eq!(v["total"]["skipped"]["not_elf"], 1, "{v:#}");
    assert_eq!(v["errors"][0]["file"], text.display().to_string());
    // A directory with nothing to report is unusable input.
    let empty = root.join("empty-dir");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::write(empty.join("notes"), "text").expect("write");
    let out = run(&["check", "--max-pad", "16"], &[&empty]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no RISC-V ELF file with a patch table (1 skipped (1 not ELF))"),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_exits_with_the_worst_file_and_every_finding_names_its_file() {
    let (root, _) = tree("check");
    let big = root.join("basic"); // 16-byte pads
    let small = root.join("bin/control"); // 8-byte pads
    let out = run(&["check", "--max-pad", "16"], &[&big, &small]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("checked 2 files: 2 ok, 0 failed, 0 unusable"));

    let out = run(&["check", "--max-pad", "8"], &[&big, &small]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    let findings: Vec<&str> = text.lines().filter(|l| l.contains("> limit 8")).collect();
    assert!(!findings.is_empty(), "{text}");
    for f in &findings {
        assert!(f.starts_with(&format!("{}: ", big.display())), "{f}");
    }
    assert!(
        text.contains(&format!("{}: ok: ", small.display())),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: check failed: ", big.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("checked 2 files: 1 ok, 1 failed, 0 unusable"),
        "{stderr}"
    );

    // JSON: every finding carries its file; the worst outcome is said.
    let out = run(&["check", "--json", "--max-pad", "8"], &[&root]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v = json(&out);
    assert_eq!(v["pass"], false);
    assert_eq!(v["worst"], "failed");
    let mut named = 0;
    for f in v["files"].as_array().expect("files") {
        for finding in f["findings"].as_array().expect("findings") {
            assert_eq!(finding["file"], f["file"], "{finding}");
            named += 1;
        }
    }
    assert!(named > 0);
    assert_eq!(v["total"]["skipped"]["no_table"], 1, "{v:#}");

    // GitHub annotations carry file=.
    let out = run(
        &["check", "--format", "github", "--max-pad", "8"],
        &[&big, &small],
    );
    assert_eq!(out.status.code(), Some(1));
    let prefix = format!(
        "::error file={},title=padtrim check (pad-too-large)::",
        big.display()
    );
    let annotations: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("::error"))
        .map(str::to_string)
        .collect();
    assert!(!annotations.is_empty());
    assert!(
        annotations.iter().all(|a| a.starts_with(&prefix)),
        "{annotations:?}"
    );

    // An unusable file is worse than a failed one: exit 2, the others still checked.
    let text_file = root.join("README.txt");
    let out = run(&["check", "--max-pad", "8"], &[&big, &text_file, &small]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("padtrim: {}: ", text_file.display())),
        "{stderr}"
    );
    assert!(stdout(&out).contains(&format!("{}: ok: ", small.display())));
    assert!(
        stderr.contains("checked 3 files: 1 ok, 1 failed, 1 unusable"),
        "{stderr}"
    );
    let out = run(
        &["check", "--max-pad", "16", "--format", "github"],
        &[&big, &text_file],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains(&format!(
            "::error file={},title=padtrim check (unusable input)::",
            text_file.display()
        )),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_many_file_report_is_a_baseline_matched_by_path() {
    let (root, _) = tree("baseline");
    let prog = root.join("basic");
    // The baseline: `basic` with 8-byte pads (4 c.nops).
    std::fs::copy(&artifact("basic-rv64gc-p4-O2-pie").path, &prog).expect("copy");
    let out = run(&["report", "--json"], &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let baseline = root.parent().expect("scratch").join("baseline.json");
    std::fs::write(&baseline, &out.stdout).expect("write baseline");
    let base = baseline.to_string_lossy().into_owned();

    let out = run(&["check", "--baseline", &base], &[&root]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "unchanged tree: {}",
        describe(&out)
    );

    // `basic` grows to 16-byte pads, and `bin/g1` is gone.
    std::fs::copy(&artifact("basic-rv64gc-p8-O2-pie").path, &prog).expect("copy");
    let gone = root.join("bin/g1");
    std::fs::remove_file(&gone).expect("remove");
    let out = run(&["check", "--json", "--baseline", &base], &[&root]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v = json(&out);
    let files = v["files"].as_array().expect("files");
    for f in files {
        let kinds: Vec<&str> = f["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|x| x["kind"].as_str().expect("kind"))
            .collect();
        let file = f["file"].as_str().expect("file");
        if file == prog.to_string_lossy() {
            assert!(
                kinds.contains(&"pad-grew") && kinds.contains(&"total-grew"),
                "{f:#}"
            );
        } else if file == gone.to_string_lossy() {
            assert_eq!(kinds, ["file-lost"], "{f:#}");
        } else {
            assert!(
                kinds.is_empty(),
                "{file} compared with another file's baseline: {f:#}"
            );
        }
    }
    assert!(files
        .iter()
        .any(|f| f["file"] == gone.to_string_lossy().as_ref()));
    let out = run(&["check", "--baseline", &base], &[&root]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{}: main at ", prog.display()))
                && l.ends_with("8 -> 16 bytes")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: in the baseline with ", gone.display())),
        "{text}"
    );

    // One file against the many-file baseline: its own report, found by path.
    let out = run(&["check", "--baseline", &base], &[&prog]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).contains("8 -> 16 bytes"), "{}", describe(&out));
    let control = root.join("bin/control");
    let out = run(&["check", "--baseline", &base], &[&control]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A file the baseline does not hold cannot be compared.
    let stray = root.parent().expect("scratch").join("stray");
    std::fs::copy(&prog, &stray).expect("copy");
    let out = run(&["check", "--baseline", &base], &[&stray]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the baseline has no report for"),
        "{}",
        describe(&out)
    );

    // report --baseline: a diff per file.
    let out = run(&["report", "--baseline", &base], &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{} -> {}", prog.display(), prog.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} -> {}", gone.display(), gone.display())),
        "{text}"
    );
}
