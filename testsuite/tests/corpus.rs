//! Checks the corpus itself, with binutils and qemu only (no padtrim): the programs run and
//! agree with each other, and every table entry points at the pad the compiler flags ask for.
//! The CLI tests rely on these facts.

use std::collections::{BTreeMap, HashMap, HashSet};

use padtrim_testsuite::binutils::{self, Insn};
use padtrim_testsuite::{corpus, program_without_table, ArtifactKind, Linkage};

#[test]
fn corpus_has_the_promised_shape() {
    let all = corpus();
    assert!((40..=70).contains(&all.len()), "{} artifacts", all.len());
    let names: HashSet<&str> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "artifact names are unique");
    for a in all {
        assert!(
            a.path.is_file(),
            "{} missing at {}",
            a.name,
            a.path.display()
        );
        let hdr = binutils::header(&a.path);
        assert_eq!(hdr.pointer_size(), u64::from(a.pointer_size), "{}", a.name);
        let expected_type = match (a.kind, a.linkage) {
            (ArtifactKind::Object, _) => "REL",
            (ArtifactKind::Executable, Linkage::Pie) | (ArtifactKind::SharedLib, _) => "DYN",
            (ArtifactKind::Executable, _) => "EXEC",
        };
        assert_eq!(hdr.elf_type, expected_type, "{}", a.name);
        if a.kind != ArtifactKind::Object {
            assert!(
                a.flags.iter().any(|f| f == "-Wl,-q"),
                "{} is linked with -Wl,-q",
                a.name
            );
            assert!(
                binutils::relocations(&a.path)
                    .iter()
                    .any(|r| r.name == ".rela.text"),
                "{} kept .rela.text",
                a.name
            );
        }
    }
    // Every axis of the matrix is present.
    let has = |f: &dyn Fn(&padtrim_testsuite::Artifact) -> bool| all.iter().any(f);
    assert!(has(&|a| a.march == "rv64g" && a.pad_nops == 1));
    assert!(has(&|a| a.pad_nops == 8 && a.pre_nops == 2 && a.rvc));
    assert!(has(&|a| a.pad_nops == 2 && a.function_sections));
    assert!(has(
        &|a| a.linkage == Linkage::Static && a.kind == ArtifactKind::Executable
    ));
    assert!(has(&|a| a.kind == ArtifactKind::SharedLib));
    assert!(has(&|a| a.lib_dir.is_some()));
    assert!(has(
        &|a| a.pointer_size == 4 && a.kind == ArtifactKind::Object
    ));
    assert!(has(&|a| a.program == "cxx"
        && a.kind == ArtifactKind::Executable
        && a.compiler == padtrim_testsuite::Compiler::Clangxx));
}

#[test]
fn programs_run_and_every_build_of_a_program_behaves_the_same() {
    let mut behaviour: BTreeMap<&str, Vec<(&str, String, String)>> = BTreeMap::new();
    for a in corpus().iter().filter(|a| a.runnable) {
        let out = a.run(&[]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            a.expected_status,
            "{}: status; stderr: {stderr}",
            a.name
        );
        assert!(
            stdout.lines().count() >= 2,
            "{} printed: {stdout:?}",
            a.name
        );
        behaviour
            .entry(a.program.as_str())
            .or_default()
            .push((a.name.as_str(), stdout, stderr));
    }
    for (program, runs) in &behaviour {
        let (first, out0, err0) = &runs[0];
        for (name, out, err) in &runs[1..] {
            assert_eq!(out, out0, "stdout of {name} differs from {first}");
            assert_eq!(err, err0, "stderr of {name} differs from {first}");
        }
        eprintln!("{program}: {} builds agree", runs.len());
    }
    assert!(
        behaviour.len() >= 7,
        "programs run: {:?}",
        behaviour.keys().collect::<Vec<_>>()
    );
}

/// The nops starting at `address` in `section`, stopping at the first other instruction.
fn nop_run<'a>(
    insns: &'a [Insn],
    index: &HashMap<(&str, u64), usize>,
    section: &str,
    address: u64,
) -> Vec<&'a Insn> {
    let Some(&start) = index.get(&(section, address)) else {
        return Vec::new();
    };
    insns[start..]
        .iter()
        .take_while(|i| i.section == section && (i.is_nop() || i.is_c_nop()))
        .collect()
}

#[test]
fn every_table_entry_is_a_pad_of_the_requested_shape() {
    for a in corpus() {
        let entries = binutils::pad_table(&a.path);
        assert_eq!(
            entries.len() as u64,
            binutils::table_sites(&a.path),
            "{}",
            a.name
        );
        let min = if a.program == "many" { 300 } else { 3 };
        assert!(
            entries.len() >= min,
            "{}: only {} table entries",
            a.name,
            entries.len()
        );

        let insns = binutils::disassemble(&a.path);
        let index = binutils::insn_index(&insns);
        let symbols = binutils::symbols(&a.path);
        let sections = binutils::sections(&a.path);
        for e in &entries {
            let run = nop_run(&insns, &index, &e.section, e.address);
            assert_eq!(
                run.len() as u32,
                a.pad_nops,
                "{}: pad at {}+{:#x}: {run:?}",
                a.name,
                e.section,
                e.address
            );
            assert!(
                run.iter()
                    .all(|i| if a.rvc { i.is_c_nop() } else { i.is_nop() }),
                "{}: pad at {:#x} has the wrong nops",
                a.name,
                e.address
            );
            let entry = e.address + u64::from(a.pre_nops * a.nop_bytes());
            let func = symbols.iter().find(|s| {
                s.kind == "FUNC"
                    && s.value == entry
                    && (a.kind != ArtifactKind::Object
                        || s.section_index.map(|i| sections[i].name.as_str())
                            == Some(e.section.as_str()))
            });
            assert!(
                func.is_some(),
                "{}: no function symbol at {}+{entry:#x}",
                a.name,
                e.section
            );
        }
    }
}

#[test]
fn the_program_without_table_has_none_and_runs() {
    let a = program_without_table();
    assert!(binutils::sections(&a.path)
        .iter()
        .all(|s| !s.name.contains("patchable")));
    let out = a.run(&[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn objects_link_with_their_link_command_and_run_like_the_programs() {
    let dir = padtrim_testsuite::scratch_dir("corpus_objects_link");
    let mut linked = 0;
    for a in corpus().iter().filter(|a| a.kind == ArtifactKind::Object) {
        let out_path = dir.join(&a.name);
        let Some(mut cmd) = a.link_command(&a.path, &out_path) else {
            assert_eq!(
                a.pointer_size, 4,
                "{}: only rv32 objects lack a link line",
                a.name
            );
            continue;
        };
        let out = cmd.output().expect("run linker");
        assert!(
            out.status.success(),
            "{}: link failed: {}",
            a.name,
            String::from_utf8_lossy(&out.stderr)
        );
        linked += 1;
        if a.linkage == Linkage::Shared {
            continue;
        }
        // Compare with a linked build of the same program.
        let reference = corpus()
            .iter()
            .find(|p| p.runnable && p.program == a.program)
            .unwrap_or_else(|| panic!("no runnable build of {}", a.program));
        let got = padtrim_testsuite::run_qemu(&out_path, &[], &[]);
        let want = reference.run(&[]);
        assert_eq!(got.status.code(), Some(3), "{}", a.name);
        assert_eq!(
            got.stdout, want.stdout,
            "{}: stdout differs from {}",
            a.name, reference.name
        );
        assert_eq!(
            got.stderr, want.stderr,
            "{}: stderr differs from {}",
            a.name, reference.name
        );
    }
    assert!(linked >= 8, "only {linked} objects linked");
}
