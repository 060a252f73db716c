//! `padtrim check`: the CI gate's exit codes and findings on real corpus files.

use std::path::Path;

use padtrim_testsuite::binutils;
use padtrim_testsuite::{
    artifact, check, corpus, describe, save_baseline, scratch_dir, Artifact, ArtifactKind,
};

/// Names of the functions whose pads the table records, from readelf (not from padtrim).
fn padded_function_names(a: &Artifact) -> Vec<String> {
    let symbols = binutils::symbols(&a.path);
    let sections = binutils::sections(&a.path);
    let entry_offset = u64::from(a.pre_nops * a.nop_bytes());
    binutils::pad_table(&a.path)
        .iter()
        .map(|e| {
            symbols
                .iter()
                .find(|s| {
                    s.kind == "FUNC"
                        && s.value == e.address + entry_offset
                        && (a.kind != ArtifactKind::Object
                            || s.section_index.map(|i| sections[i].name.as_str())
                                == Some(e.section.as_str()))
                })
                .unwrap_or_else(|| {
                    panic!("{}: no function at {}+{:#x}", a.name, e.section, e.address)
                })
                .name
                .clone()
        })
        .collect()
}

/// The rvc `=8` builds (16-byte pads, no pre-nops), programs and objects.
fn rvc_pad8() -> Vec<&'static Artifact> {
    let list: Vec<_> = corpus()
        .iter()
        .filter(|a| {
            a.rvc && a.pad_nops == 8 && a.pre_nops == 0 && a.kind != ArtifactKind::SharedLib
        })
        .collect();
    assert!(
        list.len() >= 10,
        "expected many =8 rvc builds, got {}",
        list.len()
    );
    list
}

#[test]
fn max_pad_passes_at_the_pad_size_and_fails_below_it_naming_every_function() {
    for a in rvc_pad8() {
        let out = check(&a.path, &["--max-pad", "16"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} --max-pad 16: {}",
            a.name,
            describe(&out)
        );

        let out = check(&a.path, &["--max-pad", "8"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} --max-pad 8: {}",
            a.name,
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let names = padded_function_names(a);
        for name in &names {
            assert!(
                text.contains(name.as_str()),
                "{} --max-pad 8 does not name {name}: {}",
                a.name,
                describe(&out)
            );
        }
        // One line per offending function: count lines naming a padded function as a word.
        let finding_lines = text
            .lines()
            .filter(|l| {
                l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .any(|w| names.iter().any(|n| n == w))
            })
            .count();
        assert!(
            finding_lines >= names.len(),
            "{}: {} findings for {} functions: {}",
            a.name,
            finding_lines,
            names.len(),
            describe(&out)
        );
    }
}

#[test]
fn min_sites_is_exact() {
    for name in [
        "many-rv64gc-p8-O2-pie",
        "basic-rv64g-p1-O2-nopie",
        "cxx-clang-rv64gc-p8-O0-nopie",
    ] {
        let a = artifact(name);
        let sites = binutils::table_sites(&a.path).to_string();
        let fewer = (binutils::table_sites(&a.path) + 1).to_string();
        let out = check(&a.path, &["--min-sites", &sites]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} --min-sites {sites}: {}",
            describe(&out)
        );
        let out = check(&a.path, &["--min-sites", &fewer]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name} --min-sites {fewer}: {}",
            describe(&out)
        );
    }
}

/// Saves `padtrim report --json` of `a` as a baseline file.
fn baseline_of(a: &Artifact, dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{}.json", a.name));
    save_baseline(&a.path, &path);
    path
}

#[test]
fn baseline_of_the_same_file_passes() {
    let dir = scratch_dir("check_cli_same_baseline");
    for name in [
        "basic-rv64gc-p8-O2-pie",
        "many-rv64g-p8_2-O0-static",
        "cxx-gxx-rv64gc-p8-O2-pie-obj",
        "shared_lib-rv64gc-p8_2-O2-shared-ffs",
    ] {
        let a = artifact(name);
        let baseline = baseline_of(a, &dir);
        let out = check(&a.path, &["--baseline", baseline.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} against its own report: {}",
            describe(&out)
        );
    }
}

#[test]
fn baseline_catches_pads_that_grew_and_accepts_pads_that_shrank() {
    let dir = scratch_dir("check_cli_grown_baseline");
    let small = artifact("basic-rv64gc-p4-O2-pie");
    let large = artifact("basic-rv64gc-p8-O2-pie");
    assert_eq!(small.sources, large.sources);

    let out = check(
        &large.path,
        &["--baseline", baseline_of(small, &dir).to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "=8 build against the =4 baseline: {}",
        describe(&out)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for name in ["fib", "classify", "interpret", "aligned_fn"] {
        assert!(
            text.contains(name),
            "grown pad of {name} not reported: {}",
            describe(&out)
        );
    }

    let out = check(
        &small.path,
        &["--baseline", baseline_of(large, &dir).to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "=4 build against the =8 baseline (pads shrank): {}",
        describe(&out)
    );
}
