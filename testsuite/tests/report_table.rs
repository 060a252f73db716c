//! `padtrim report`'s function table, through the binary: `--top` (0 = all) and `--all`,
//! `--sort`, `--functions` globs, `--csv` / `--tsv`, the `align` legend; and the words of
//! `report` and `check` (no Rust enum names, plurals, growth said as growth).
//!
//! Expectations come from `report --json` (the whole report, which these flags leave alone)
//! and, for the program built here, from its source.

use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::{artifact, padtrim, report_json, scratch_dir};
use padtrim_testsuite::{describe, run_padtrim as run};

/// Five functions with five pad sizes (attributes), and `main` with the default `=2`:
/// name, address and size orders all differ.
const MIXED: &str = r#"
#include <stdio.h>
#define PAD(n) __attribute__((noinline, patchable_function_entry(n)))
PAD(1) int alpha(int x) { return x + 1; }
PAD(2) int beta(int x) { return x * 2; }
PAD(4) int gamma_(int x) { return x - 3; }
PAD(8) int delta(int x) { return x ^ 5; }
PAD(3) int epsilon(int x) { return x | 8; }
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", alpha(argc) + beta(argc) + gamma_(argc) + delta(argc) + epsilon(argc));
    return 0;
}
"#;

/// One padded function only: every count in the output is 1.
const SINGLE: &str = r#"
__attribute__((noinline, patchable_function_entry(2))) int only(int x) { return x + 1; }
int main(int argc, char **argv) { (void)argv; return only(argc) - 2; }
"#;

fn build(name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let dir = scratch_dir(&format!("report-table-{name}"));
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write the source");
    let exe = dir.join(name);
    let out = Command::new("riscv64-linux-gnu-gcc")
        .args(["-O2", "-Wl,-q"])
        .args(extra)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run riscv64-linux-gnu-gcc");
    assert!(out.status.success(), "gcc: {}", describe(&out));
    exe
}

/// Runs `padtrim report ARGS FILE`, asserts exit 0, returns stdout.
fn report(args: &[&str], file: &Path) -> String {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let out = run(&all, file);
    assert_eq!(out.status.code(), Some(0), "{all:?}: {}", describe(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// One row of the text table: (function, pad address, pad bytes).
type Row = (String, u64, u64);

/// The rows of the text report's function table (after its column header).
fn table_rows(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("function ") && l.contains("align"))
        .unwrap_or_else(|| panic!("no function table in:\n{text}"));
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(t.len(), 6, "row {l:?}");
            let addr = u64::from_str_radix(t[1].trim_start_matches("0x"), 16).expect("hex");
            (t[0].to_string(), addr, t[2].parse().expect("pad bytes"))
        })
        .collect()
}

/// The `functions` rows of `report --json`: (name, pad address, pad bytes).
fn json_rows(file: &Path) -> Vec<Row> {
    report_json(file)["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_string(),
                f["pad_address"].as_u64().expect("pad_address"),
                f["pad_bytes"].as_u64().expect("pad_bytes"),
            )
        })
        .collect()
}

fn names(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

/// A linked corpus program with well over 20 functions.
fn many() -> &'static Path {
    &artifact("many-rv64gc-p8-O2-pie").path
}

#[test]
fn top_zero_and_all_list_every_function_and_top_n_lists_n() {
    let file = many();
    let all = json_rows(file);
    assert!(
        all.len() > 40,
        "the test needs many functions: {}",
        all.len()
    );

    let default = table_rows(&report(&[], file));
    assert_eq!(default.len(), 20, "the text report lists 20 by default");
    for args in [&["--top", "0"][..], &["--all"][..]] {
        let text = report(args, file);
        let rows = table_rows(&text);
        assert_eq!(rows.len(), all.len(), "{args:?}");
        let mut got = names(&rows);
        let mut want = names(&all);
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{args:?}");
        let header = format!(
            "functions ({} of {}, largest pads first):",
            all.len(),
            all.len()
        );
        assert!(text.contains(&header), "{args:?} lacks {header:?}:\n{text}");
    }
    assert_eq!(table_rows(&report(&["--top", "5"], file)).len(), 5);
    assert_eq!(default[..5], table_rows(&report(&["--top", "5"], file))[..]);
}

#[test]
fn sort_by_size_name_and_address() {
    let exe = build("mixed", MIXED, &["-fpatchable-function-entry=2"]);
    let json = json_rows(&exe);
    let sizes: Vec<(&str, u64)> = json.iter().map(|r| (r.0.as_str(), r.2)).collect();
    for (name, bytes) in [
        ("alpha", 2),
        ("beta", 4),
        ("gamma_", 8),
        ("delta", 16),
        ("epsilon", 6),
        ("main", 4),
    ] {
        assert!(sizes.contains(&(name, bytes)), "{name}: {sizes:?}");
    }

    let by_size = table_rows(&report(&["--sort", "size"], &exe));
    assert_eq!(
        by_size,
        table_rows(&report(&[], &exe)),
        "size is the default"
    );
    assert_eq!(names(&by_size)[..3], ["delta", "gamma_", "epsilon"]);
    // beta and main tie at 4 bytes: the lower pad address first.
    let tie: Vec<&Row> = by_size.iter().filter(|r| r.2 == 4).collect();
    assert_eq!(tie.len(), 2, "{by_size:?}");
    assert!(tie[0].1 < tie[1].1, "{by_size:?}");
    assert_eq!(by_size[5].0, "alpha");

    let text = report(&["--sort", "name"], &exe);
    assert!(text.contains("functions (6 of 6, by name):"), "{text}");
    assert_eq!(
        names(&table_rows(&text)),
        ["alpha", "beta", "delta", "epsilon", "gamma_", "main"]
    );

    let text = report(&["--sort", "address"], &exe);
    assert!(text.contains("functions (6 of 6, by address):"), "{text}");
    let by_address = table_rows(&text);
    let mut want = json.clone();
    want.sort_by_key(|r| r.1);
    assert_eq!(by_address, want);

    let out = run(&["report", "--sort", "colour"], &exe);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn functions_globs_filter_rows_and_say_how_many_matched() {
    let file = many();
    let all = json_rows(file);
    let total = all.len();
    let want = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut v: Vec<String> = all
            .iter()
            .map(|r| r.0.clone())
            .filter(|n| keep(n))
            .collect();
        v.sort();
        v
    };
    let got = |args: &[&str]| -> (String, Vec<String>) {
        let text = report(args, file);
        let mut v: Vec<String> = table_rows(&text).into_iter().map(|r| r.0).collect();
        v.sort();
        (text, v)
    };
    let digits =
        |n: &str| n.len() == 4 && n.starts_with('f') && n[1..].bytes().all(|b| b.is_ascii_digit());

    // `?` is one character, `*` any run.
    let f00x = want(&|n| digits(n) && n.starts_with("f00"));
    assert!(f00x.len() >= 5, "{f00x:?}");
    let (text, rows) = got(&["--functions", "f00?", "--all"]);
    assert_eq!(rows, f00x);
    let line = format!("{} of {total} functions match f00?", f00x.len());
    assert!(text.contains(&line), "no {line:?} in:\n{text}");
    let (_, rows) = got(&["--functions", "f0*", "--all"]);
    assert_eq!(rows, want(&|n| n.starts_with("f0")));

    // Repeated and comma-separated globs are the same list.
    let with_main = want(&|n| n == "main" || (digits(n) && n.starts_with("f00")));
    let (text, rows) = got(&["--functions", "f00?", "--functions", "main", "--all"]);
    assert_eq!(rows, with_main);
    let line = format!("{} of {total} functions match f00?, main", with_main.len());
    assert!(text.contains(&line), "no {line:?} in:\n{text}");
    assert_eq!(got(&["--functions", "f00?,main", "--all"]).1, with_main);

    // Classes, ranges and negation.
    let (_, rows) = got(&["--functions", "f01[0-4]", "--all"]);
    assert_eq!(
        rows,
        want(&|n| digits(n) && n.starts_with("f01") && n.as_bytes()[3] <= b'4')
    );
    let (_, rows) = got(&["--functions", "f00[!0-8]", "--all"]);
    assert_eq!(rows, want(&|n| n == "f009"));

    // --top cuts the matched rows; the header counts against the matches.
    let (text, rows) = got(&["--functions", "f0*", "--top", "3"]);
    assert_eq!(rows.len(), 3);
    let matched = want(&|n| n.starts_with("f0")).len();
    assert!(
        text.contains(&format!("functions (3 of {matched}, largest pads first):")),
        "{text}"
    );

    // Nothing matched: said, and an empty table.
    let (text, rows) = got(&["--functions", "no_such_*"]);
    assert!(rows.is_empty());
    assert!(
        text.contains(&format!("0 of {total} functions match no_such_*")),
        "{text}"
    );
}

/// The columns `--csv` / `--tsv` print, in order.
const COLUMNS: [&str; 10] = [
    "function",
    "section",
    "address",
    "pad_address",
    "pad_bytes",
    "pad_insns",
    "pre_bytes",
    "nop_kind",
    "align",
    "state",
];

/// The JSON function rows as the cells `--csv` prints.
fn json_cells(file: &Path) -> Vec<Vec<String>> {
    report_json(file)["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().expect(k).to_string();
            let n = |k: &str| f[k].as_u64().expect(k);
            vec![
                s("name"),
                s("section"),
                format!("{:#x}", n("address")),
                format!("{:#x}", n("pad_address")),
                n("pad_bytes").to_string(),
                n("pad_insns").to_string(),
                n("pre_bytes").to_string(),
                s("nop_kind"),
                n("align").to_string(),
                s("state"),
            ]
        })
        .collect()
}

#[test]
fn csv_and_tsv_print_the_whole_function_table_with_a_header() {
    for file in [
        many().to_path_buf(),
        artifact("many-rv64gc-p8-O2-pie-obj").path.clone(),
        build("mixed-csv", MIXED, &["-fpatchable-function-entry=2"]),
    ] {
        let mut want = json_cells(&file);
        want.sort();
        for (flag, sep) in [("--csv", ","), ("--tsv", "\t")] {
            let text = report(&[flag], &file);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(COLUMNS.join(sep).as_str()), "{flag}");
            let mut rows: Vec<Vec<String>> = lines
                .map(|l| l.split(sep).map(String::from).collect())
                .collect();
            // Every function, not 20: machine-readable output is the whole table.
            assert_eq!(rows.len(), want.len(), "{flag} {}", file.display());
            rows.sort();
            assert_eq!(rows, want, "{flag} {}", file.display());

            // The table flags apply.
            let text = report(&[flag, "--top", "3", "--sort", "name"], &file);
            let cut: Vec<&str> = text.lines().skip(1).collect();
            assert_eq!(cut.len(), 3.min(want.len()), "{flag} --top 3");
            let mut first: Vec<&String> = want.iter().map(|r| &r[0]).collect();
            first.sort();
            for (line, name) in cut.iter().zip(first) {
                assert!(
                    line.starts_with(&format!("{name}{sep}")),
                    "{line} vs {name}"
                );
            }
        }
    }
    let exe = build("mixed-csv-filter", MIXED, &["-fpatchable-function-entry=2"]);
    let text = report(&["--csv", "--functions", "*a,main"], &exe);
    let got: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(got.len(), 4, "{text}");
    for name in ["alpha", "beta", "delta", "main"] {
        assert!(got.contains(&name), "{name} missing:\n{text}");
    }
}

#[test]
fn table_flags_do_not_mix_with_json_or_baseline_or_each_other() {
    let file = many();
    for args in [
        &["report", "--json", "--functions", "f0*"][..],
        &["report", "--json", "--csv"],
        &["report", "--json", "--sort", "name"],
        &["report", "--json", "--all"],
        &["report", "--csv", "--tsv"],
        &["report", "--all", "--top", "3"],
        &["report", "--baseline", "x.json", "--csv"],
    ] {
        let out = run(args, file);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
            "{args:?}: {}",
            describe(&out)
        );
    }
    // --json stays the whole report, whatever --top says (as before).
    let whole = report_json(file);
    let out = run(&["report", "--json", "--top", "1"], file);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v, whole);
}

#[test]
fn the_align_column_is_explained_in_the_report_and_in_help() {
    let text = report(&[], many());
    let header = text
        .lines()
        .position(|l| l.trim_start().starts_with("function ") && l.contains("align"))
        .expect("column header");
    let legend = text
        .lines()
        .nth(header - 1)
        .expect("a line before the header");
    assert!(
        legend.contains("align")
            && legend.contains("power of two")
            && legend.contains("pad address"),
        "no align legend above the columns:\n{text}"
    );
    for flag in ["-h", "--help"] {
        let out = padtrim()
            .args(["report", flag])
            .output()
            .expect("run padtrim report --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(
            help.contains("align = the largest power of two"),
            "{flag}:\n{help}"
        );
        for option in ["--top", "--all", "--sort", "--functions", "--csv", "--tsv"] {
            assert!(help.contains(option), "{flag} lacks {option}:\n{help}");
        }
        if flag == "--help" {
            for column in COLUMNS {
                assert!(
                    help.lines()
                        .any(|l| l.trim_start().starts_with(&format!("{column} "))),
                    "--help does not describe column {column}:\n{help}"
                );
            }
        }
    }
}

#[test]
fn report_and_check_speak_in_words_with_plurals_right() {
    // Kinds and table sources in words, not enum variant names.
    for (name, kind, source) in [
        (
            "basic-rv64gc-p8-O2-pie",
            "position-independent executable",
            "table from __patchable_function_entries",
        ),
        (
            "basic-rv64gc-p8-O2-pie-obj",
            "relocatable object",
            "table from the relocations of __patchable_function_entries",
        ),
    ] {
        let text = report(&[], &artifact(name).path);
        let first = text.lines().next().expect("a first line");
        assert!(first.contains(kind) && first.ends_with(source), "{first}");
        for variant in [
            "Relocations",
            "Section",
            "KernelMcountLoc",
            "Pie",
            "Relocatable",
        ] {
            assert!(!first.contains(variant), "{variant} in {first:?}");
        }
    }

    // One of everything: singular words.
    let exe = build("single", SINGLE, &[]);
    let text = report(&[], &exe);
    assert!(text.contains("sites: 1 "), "{text}");
    let histogram = text
        .lines()
        .skip_while(|l| !l.starts_with("pad histogram"))
        .nth(1)
        .expect("a histogram row");
    assert_eq!(
        histogram.split_whitespace().collect::<Vec<_>>(),
        ["4", "bytes", "1", "pad"]
    );
    let out = run(&["check", "--max-pad", "4"], &exe);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with(": ok: 1 site, 4 pad bytes\n"), "{stdout}");
    let out = run(&["check", "--min-sites", "2"], &exe);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        all.contains("1 usable site found (1 table entry), at least 2 required"),
        "{all}"
    );
    assert!(all.contains("check failed: 1 finding\n"), "{all}");
    assert!(
        !all.contains("1 findings") && !all.contains("1 sites"),
        "{all}"
    );
    let out = run(&["check", "--max-pad", "2", "--min-sites", "2"], &exe);
    let all =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(all.contains("pad 4 bytes > limit 2"), "{all}");
    assert!(all.contains("check failed: 2 findings\n"), "{all}");

    // A projection that grows the text says so, without a negative saving.
    let file = &artifact("many-rv64gc-p2-O2-pie-ffs").path;
    let text = report(&["--slot", "4"], file);
    let line = text
        .lines()
        .find(|l| l.starts_with("projected"))
        .expect("a projection line");
    let json = report_json(file);
    let saving = json["projected_saving_bytes"].as_i64().expect("saving");
    assert!(
        saving < 0,
        "the test needs a projection that grows: {saving}"
    );
    assert_eq!(
        line,
        format!(
            "projected cost of 4-byte slots: text {} bytes larger ({:.2}% of text; {} bytes of slot alignment)",
            -saving,
            100.0 * (-saving) as f64 / json["text_bytes"].as_u64().expect("text") as f64,
            json["projected_alignment_bytes"].as_u64().expect("alignment")
        )
    );
    assert!(!line.contains(" -") && !line.contains("(-"), "{line}");
}
