//! `padtrim check` and `report --json` on copies of corpus files whose pad table was damaged
//! on purpose: every entry zeroed (the 2026 kernel regression, "ftrace: allocating 0
//! entries"), some entries zeroed, some shifted by +2 or -2 bytes, one pointed outside the
//! text, the table emptied or removed, and (objects) relocations turned into `R_RISCV_NONE`.
//!
//! The damage is written at file offsets found with readelf (the table word in a
//! position-dependent program, the `R_RISCV_RELATIVE` addend in `.rela.dyn` of a PIE or
//! shared library, since that is what the loader uses, the `r_addend`/`r_info` of the
//! table's relocations in an object), never with the scanner under test. What each damaged
//! entry must be reported as is predicted from objdump's instructions and readelf's
//! symbols.
//!
//! Exit codes (the contract): `check` exits 1 for every damage it finds in a table it could
//! read, including an empty table; it exits 2 only when there is no table at all (the
//! section was removed: the file cannot be told apart from one built without
//! `-fpatchable-function-entry`). `report` prints its JSON and then exits 2 when entries are
//! unusable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::binutils::{self, Insn, Section};
use padtrim_testsuite::run_padtrim as run;
use padtrim_testsuite::{
    artifact, check, corpus, describe, padtrim, save_baseline, scratch_dir, Artifact, ArtifactKind,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Running padtrim

fn all_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `report --json FILE`: the parsed object and the exit code (2 when entries are unusable).
fn report(file: &Path) -> (Value, Option<i32>, String) {
    let out = run(&["report", "--json"], file);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report --json {} printed no JSON ({e}): {}",
            file.display(),
            describe(&out)
        )
    });
    (
        json,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("report has no number {key}: {v}"))
}

/// `entry_offsets` as a map.
fn offsets(v: &Value) -> BTreeMap<i64, u64> {
    v.get("entry_offsets")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("report has no entry_offsets object"))
        .iter()
        .map(|(k, n)| {
            (
                k.parse().expect("entry_offsets key is an integer"),
                n.as_u64().expect("entry_offsets count"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Where the table lives in the file (readelf)

/// One table entry: where the value the linker or loader uses is stored, and what it holds.
#[derive(Debug, Clone)]
struct Slot {
    /// File offset of the value: the table word (position-dependent programs), the
    /// `R_RISCV_RELATIVE` addend in `.rela.dyn` (PIE, shared library) or the relocation's
    /// `r_addend` (object).
    value_at: usize,
    /// Width of that value in bytes.
    width: usize,
    /// Objects: file offset of the relocation's `r_info`.
    info_at: Option<usize>,
    /// Objects: the relocation's symbol index.
    symbol_index: u64,
    /// The section the pad is in (objects: the section of the relocation's symbol).
    section: String,
    /// The address the entry resolves to (a section offset in an object).
    address: u64,
}

/// The table of one file as readelf shows it.
struct Table {
    slots: Vec<Slot>,
    /// ELF64 (else ELF32).
    class64: bool,
    /// A relocatable object.
    object: bool,
    /// Every section (readelf -SW).
    sections: Vec<Section>,
}

fn table_of(path: &Path) -> Table {
    let hdr = binutils::header(path);
    let sections = binutils::sections(path);
    let relocs = binutils::relocations(path);
    let resolved = binutils::pad_table(path);
    let object = hdr.elf_type == "REL";
    let mut slots = Vec::new();
    for table in sections
        .iter()
        .filter(|s| s.name == binutils::TABLE_SECTION)
    {
        if object {
            let rela = sections
                .iter()
                .find(|r| r.kind == "RELA" && r.info as usize == table.index)
                .unwrap_or_else(|| panic!("{}: table without RELA", path.display()));
            let entries = &relocs
                .iter()
                .find(|r| r.offset == rela.offset)
                .expect("readelf lists the table's relocations")
                .entries;
            let (info_off, addend_off, width) = if hdr.class64 { (8, 16, 8) } else { (4, 8, 4) };
            for (j, r) in entries.iter().enumerate() {
                let at = (rela.offset + j as u64 * rela.entsize) as usize;
                slots.push(Slot {
                    value_at: at + addend_off,
                    width,
                    info_at: Some(at + info_off),
                    symbol_index: r.symbol_index(hdr.class64) as u64,
                    section: String::new(),
                    address: 0,
                });
            }
        } else {
            let ptr = hdr.pointer_size();
            let dynamic = sections.iter().find(|s| s.name == ".rela.dyn");
            let relative: HashMap<u64, usize> = relocs
                .iter()
                .filter(|r| r.name == ".rela.dyn")
                .flat_map(|r| r.entries.iter().enumerate())
                .filter(|(_, e)| e.kind == "R_RISCV_RELATIVE")
                .map(|(j, e)| (e.offset, j))
                .collect();
            for i in 0..table.size / ptr {
                let word = table.address + i * ptr;
                let value_at = match (relative.get(&word), dynamic) {
                    (Some(&j), Some(d)) => (d.offset + j as u64 * d.entsize + 16) as usize,
                    _ => (table.offset + i * ptr) as usize,
                };
                slots.push(Slot {
                    value_at,
                    width: ptr as usize,
                    info_at: None,
                    symbol_index: 0,
                    section: String::new(),
                    address: 0,
                });
            }
        }
    }
    assert_eq!(
        slots.len(),
        resolved.len(),
        "{}: slots found vs readelf's table",
        path.display()
    );
    for (slot, entry) in slots.iter_mut().zip(resolved) {
        slot.section = entry.section;
        slot.address = entry.address;
    }
    Table {
        slots,
        class64: hdr.class64,
        object,
        sections,
    }
}

fn read_value(bytes: &[u8], slot: &Slot) -> u64 {
    bytes[slot.value_at..slot.value_at + slot.width]
        .iter()
        .rev()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn write_value(bytes: &mut [u8], slot: &Slot, value: u64) {
    let le = value.to_le_bytes();
    bytes[slot.value_at..slot.value_at + slot.width].copy_from_slice(&le[..slot.width]);
}

// ---------------------------------------------------------------------------------------
// Damages

/// What is done to one table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// The linked entry becomes 0 (the value the loader or program reads).
    Zero,
    /// The entry points `delta` bytes further.
    Shift(i64),
    /// The entry points outside every executable section.
    OutsideText,
    /// Objects: the relocation becomes `R_RISCV_NONE` (the linker then leaves a zero).
    DropRelocation,
}

/// Writes `edits` into a copy of `src` named `dir/label`; returns the copy's path and the
/// address every entry now resolves to (`None`: no relocation any more).
fn damage(
    src: &Path,
    table: &Table,
    dir: &Path,
    label: &str,
    edits: &[(usize, Edit)],
) -> (PathBuf, Vec<Option<u64>>) {
    let mut bytes = std::fs::read(src).expect("read original");
    let mut now: Vec<Option<u64>> = table.slots.iter().map(|s| Some(s.address)).collect();
    for &(i, edit) in edits {
        let slot = &table.slots[i];
        let old = read_value(&bytes, slot);
        let mask = if slot.width == 8 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        match edit {
            Edit::Zero => {
                assert!(!table.object, "zeroing is for linked files");
                write_value(&mut bytes, slot, 0);
                now[i] = Some(0);
            }
            Edit::Shift(delta) => {
                write_value(&mut bytes, slot, old.wrapping_add(delta as u64) & mask);
                now[i] = Some(slot.address.wrapping_add(delta as u64));
            }
            Edit::OutsideText => {
                let target = if table.object {
                    // Past the end of the pad's own section.
                    section_named(table, &slot.section).size + 0x40
                } else {
                    // The table itself: allocated, writable, not executable.
                    table
                        .sections
                        .iter()
                        .find(|s| s.name == binutils::TABLE_SECTION)
                        .expect("table section")
                        .address
                };
                let delta = target.wrapping_sub(slot.address);
                write_value(&mut bytes, slot, old.wrapping_add(delta) & mask);
                now[i] = Some(target);
            }
            Edit::DropRelocation => {
                let at = slot.info_at.expect("objects only");
                let info = if table.class64 {
                    (slot.symbol_index << 32).to_le_bytes().to_vec()
                } else {
                    ((slot.symbol_index as u32) << 8).to_le_bytes().to_vec()
                };
                bytes[at..at + info.len()].copy_from_slice(&info);
                now[i] = None;
            }
        }
    }
    let path = dir.join(label);
    std::fs::write(&path, &bytes).expect("write damaged copy");
    // The damage is visible to binutils as intended.
    let seen = binutils::pad_table(&path);
    if !table.object {
        for (i, want) in now.iter().enumerate() {
            assert_eq!(
                Some(seen[i].address),
                *want,
                "{label}: readelf does not see entry {i} as written"
            );
        }
    } else {
        let kept = binutils::relocations(&path)
            .iter()
            .filter(|r| r.name.starts_with(".rela__patchable_function_entries"))
            .flat_map(|r| r.entries.iter())
            .filter(|e| e.kind == "R_RISCV_NONE")
            .count();
        assert_eq!(kept, now.iter().filter(|a| a.is_none()).count(), "{label}");
    }
    (path, now)
}

fn section_named<'t>(table: &'t Table, name: &str) -> &'t Section {
    table
        .sections
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name}"))
}

// ---------------------------------------------------------------------------------------
// What padtrim must say, predicted from binutils

/// How one entry must be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A usable site.
    Site,
    /// Zero.
    Zero,
    /// Not in an executable section.
    Outside,
    /// Inside an instruction.
    MidInstruction,
    /// On an instruction that is not a nop.
    NoNop,
    /// On a nop, but not where the pad starts (inside a pad, or misplaced).
    InsidePad,
    /// An object entry without an absolute relocation.
    Unresolved,
}

impl Verdict {
    /// Words of the check message that name this problem (any one of them).
    fn phrases(self) -> &'static [&'static str] {
        match self {
            Verdict::Site => &[],
            Verdict::Zero => &["are zero", "is zero"],
            Verdict::Outside => &["not inside an executable section"],
            Verdict::MidInstruction => &["middle of an instruction"],
            Verdict::NoNop => &["holds no nop"],
            Verdict::InsidePad => &[
                "not at the start of a nop run",
                "bytes from its function's symbol",
            ],
            Verdict::Unresolved => &["no usable relocation"],
        }
    }
}

/// The original file's instructions and functions, to predict what a damaged entry hits.
struct Truth {
    table: Table,
    /// (section, address) → instruction.
    insns: HashMap<(String, u64), Insn>,
    /// (section, address) → function name (FUNC symbols).
    functions: HashMap<(String, u64), String>,
    /// Bytes between a pad's first nop and its function symbol.
    pre_bytes: u64,
}

impl Truth {
    fn of(a: &Artifact) -> Truth {
        let table = table_of(&a.path);
        // -z: show blocks of zeros too (padding between input sections), which objdump
        // otherwise skips as "...".
        let out = Command::new(binutils::OBJDUMP)
            .args(["-d", "-w", "-z"])
            .arg(&a.path)
            .output()
            .expect("run objdump");
        assert!(out.status.success(), "objdump -d -z {}", a.name);
        let insns = binutils::parse_disassembly(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .map(|i| ((i.section.clone(), i.address), i))
            .collect();
        let functions = binutils::symbols(&a.path)
            .into_iter()
            .filter(|s| s.kind == "FUNC")
            .filter_map(|s| {
                let section = table.sections.get(s.section_index?)?.name.clone();
                Some(((section, s.value), s.name))
            })
            .collect();
        Truth {
            table,
            insns,
            functions,
            pre_bytes: u64::from(a.pre_nops * a.nop_bytes()),
        }
    }

    /// The executable section holding `address` for entry `i` (objects: the entry's own).
    fn exec_section(&self, i: usize, address: u64) -> Option<&Section> {
        if self.table.object {
            let s = section_named(&self.table, &self.table.slots[i].section);
            (s.flags.contains('X') && address < s.size).then_some(s)
        } else {
            self.table.sections.iter().find(|s| {
                s.flags.contains('X')
                    && s.flags.contains('A')
                    && s.address <= address
                    && address < s.address + s.size
            })
        }
    }

    /// The name of entry `i`'s function in the undamaged file, if it has a FUNC symbol.
    fn function(&self, i: usize) -> Option<&String> {
        let slot = &self.table.slots[i];
        self.functions
            .get(&(slot.section.clone(), slot.address + self.pre_bytes))
    }

    /// How entry `i`, now resolving to `now`, must be reported, and the `entry_offsets`
    /// key it must add (function symbol − entry) when it is attributed to its function.
    fn predict(&self, i: usize, now: Option<u64>) -> (Verdict, Option<i64>) {
        let slot = &self.table.slots[i];
        let symbol = self
            .function(i)
            .map(|_| (slot.address + self.pre_bytes) as i64);
        let Some(address) = now else {
            return (Verdict::Unresolved, None);
        };
        if address == 0 && !self.table.object {
            return (Verdict::Zero, None);
        }
        let Some(section) = self.exec_section(i, address) else {
            return (Verdict::Outside, None);
        };
        let offset = symbol.map(|s| s - address as i64);
        if address == slot.address {
            return (Verdict::Site, offset);
        }
        match self.insns.get(&(section.name.clone(), address)) {
            None => (Verdict::MidInstruction, None),
            // On a nop: inside this entry's own pad, or in alignment padding right before it.
            Some(insn) if insn.is_c_nop() || insn.is_nop() => (Verdict::InsidePad, offset),
            // On another instruction: it belongs to the closest function (the one at or
            // after it on a tie), which is not always the pad's: -2 can hit a tiny
            // function's entry.
            Some(_) => {
                let nearest = self
                    .functions
                    .keys()
                    .filter(|(s, _)| *s == section.name)
                    .map(|&(_, v)| v)
                    .min_by_key(|&v| (v.abs_diff(address), v < address));
                (Verdict::NoNop, nearest.map(|v| v as i64 - address as i64))
            }
        }
    }
}

/// What the report of a damaged file must count.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    zero: u64,
    invalid: u64,
    sites: u64,
    offsets: BTreeMap<i64, u64>,
}

// ---------------------------------------------------------------------------------------
// The damage matrix

/// A generous pad limit, so that only table problems fail the gate.
const ANY_PAD: &str = "256";

/// Entries to damage when only some are: first, middle, last (fewer on tiny tables, so the
/// undamaged ones stay the majority that defines a file's usual entry offset).
fn some(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n - 1];
    v.sort_unstable();
    v.dedup();
    v.truncate((n - 1) / 2);
    assert!(
        !v.is_empty(),
        "table of {n} entries is too small to damage some"
    );
    v
}

/// The damages applied to every file: a label and the edits.
fn damages(t: &Table) -> Vec<(String, Vec<(usize, Edit)>)> {
    let n = t.slots.len();
    let all = 0..n;
    let mut list = Vec::new();
    if t.object {
        list.push((
            "relocations-dropped-all".into(),
            all.clone().map(|i| (i, Edit::DropRelocation)).collect(),
        ));
        list.push((
            "relocations-dropped-some".into(),
            some(n)
                .into_iter()
                .map(|i| (i, Edit::DropRelocation))
                .collect(),
        ));
    } else {
        list.push((
            "zero-all".into(),
            all.clone().map(|i| (i, Edit::Zero)).collect(),
        ));
        list.push((
            "zero-some".into(),
            some(n).into_iter().map(|i| (i, Edit::Zero)).collect(),
        ));
    }
    for delta in [2i64, -2] {
        list.push((
            format!("shift{delta:+}-some"),
            some(n)
                .into_iter()
                .map(|i| (i, Edit::Shift(delta)))
                .collect(),
        ));
    }
    list.push(("outside-text-one".into(), vec![(n / 2, Edit::OutsideText)]));
    list
}

/// Checks one damaged copy: report counts, check's verdict and message in every format,
/// and what the allow flags and the baseline do with it.
fn verify_damage(
    a: &Artifact,
    truth: &Truth,
    label: &str,
    path: &Path,
    now: &[Option<u64>],
    baseline: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fail = |msg: String| problems.push(format!("{} {label}: {msg}", a.name));

    let predictions: Vec<(Verdict, Option<i64>)> =
        (0..now.len()).map(|i| truth.predict(i, now[i])).collect();
    let mut want = Counts::default();
    for (verdict, offset) in &predictions {
        match verdict {
            Verdict::Site => want.sites += 1,
            Verdict::Zero => want.zero += 1,
            _ => want.invalid += 1,
        }
        if let Some(o) = offset {
            *want.offsets.entry(*o).or_insert(0) += 1;
        }
    }

    // report --json counts.
    let (json, status, stderr) = report(path);
    let got = Counts {
        zero: count(&json, "zero_entries"),
        invalid: count(&json, "invalid_entries"),
        sites: json
            .get("functions")
            .and_then(Value::as_array)
            .map_or(0, |f| f.len() as u64),
        offsets: offsets(&json),
    };
    if got != want {
        fail(format!("report counts {got:?}, expected {want:?}"));
    }
    if count(&json, "sites") != now.len() as u64 {
        fail(format!(
            "report sites {} != {} table entries",
            count(&json, "sites"),
            now.len()
        ));
    }
    if status != Some(2) || stderr.trim().lines().count() != 1 || !stderr.contains("unusable") {
        fail(format!(
            "report should print its JSON and exit 2 with one line: status {status:?}, {stderr}"
        ));
    }

    // check: exit 1, a message naming each damaged entry's problem.
    let out = check(path, &["--max-pad", ANY_PAD]);
    let text = all_text(&out);
    if out.status.code() != Some(1) {
        fail(format!("check should fail: {}", describe(&out)));
    }
    for (i, (verdict, _)) in predictions.iter().enumerate() {
        if *verdict == Verdict::Site {
            continue;
        }
        if !verdict.phrases().iter().any(|p| text.contains(p)) {
            fail(format!(
                "entry {i} is {verdict:?} but check does not say {:?}: {text}",
                verdict.phrases()
            ));
        }
        // Entries that resolve to an address are named by it (the first 20 are listed).
        if let (Some(addr), true) = (now[i], i < 20) {
            if !matches!(verdict, Verdict::Zero | Verdict::Unresolved)
                && !text.contains(&format!("{addr:#x} "))
            {
                fail(format!(
                    "check does not name entry {i} at {addr:#x}: {text}"
                ));
            }
        }
    }

    // The allow flags turn exactly their own findings into passes.
    let has_zero = want.zero > 0;
    let has_invalid = want.invalid > 0;
    for (flags, passes) in [
        (vec!["--allow-zero-entries"], !has_invalid),
        (vec!["--allow-invalid-entries"], !has_zero),
        (
            vec!["--allow-zero-entries", "--allow-invalid-entries"],
            true,
        ),
    ] {
        let mut args = vec!["--max-pad", ANY_PAD];
        args.extend(&flags);
        let out = check(path, &args);
        let expected = if passes { 0 } else { 1 };
        if out.status.code() != Some(expected) {
            fail(format!(
                "check {flags:?} should exit {expected}: {}",
                describe(&out)
            ));
        }
    }

    // JSON verdict and GitHub annotations.
    let out = check(path, &["--max-pad", ANY_PAD, "--json"]);
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) => {
            let kinds: Vec<&str> = v["findings"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x["kind"].as_str()).collect())
                .unwrap_or_default();
            let expected_kinds: Vec<&str> =
                [(has_zero, "zero-entries"), (has_invalid, "invalid-entries")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, k)| *k)
                    .collect();
            if v["pass"] != Value::Bool(false) || kinds != expected_kinds {
                fail(format!(
                    "check --json: pass {}, kinds {kinds:?}, expected {expected_kinds:?}",
                    v["pass"]
                ));
            }
            if out.status.code() != Some(1) {
                fail(format!("check --json should exit 1: {}", describe(&out)));
            }
        }
        Err(e) => fail(format!(
            "check --json printed no JSON ({e}): {}",
            describe(&out)
        )),
    }
    let out = check(path, &["--max-pad", ANY_PAD, "--format", "github"]);
    let annotations: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    let expected = usize::from(has_zero) + usize::from(has_invalid);
    if annotations.len() != expected || out.status.code() != Some(1) {
        fail(format!(
            "--format github: {} ::error lines, expected {expected}: {}",
            annotations.len(),
            describe(&out)
        ));
    }

    // Against the undamaged file's report, the functions that lost their site are named,
    // even when the entry problems themselves are allowed.
    let lost: Vec<&String> = predictions
        .iter()
        .enumerate()
        .filter(|(_, (v, _))| *v != Verdict::Site)
        .filter_map(|(i, _)| truth.function(i))
        .collect();
    let out = check(
        path,
        &[
            "--baseline",
            baseline.to_str().expect("utf-8 path"),
            "--allow-zero-entries",
            "--allow-invalid-entries",
        ],
    );
    let text = all_text(&out);
    if out.status.code() != Some(1) || !text.contains(" lost ") {
        fail(format!(
            "check --baseline should report lost sites: {}",
            describe(&out)
        ));
    }
    if lost.len() <= 20 {
        for name in lost {
            if !text.contains(name.as_str()) {
                fail(format!("check --baseline does not name {name}: {text}"));
            }
        }
    }
    problems
}

/// What one corpus file went through: its kind of table, and the problems found.
struct FileOutcome {
    /// A label for the coverage check: `object`, `pie`, `shared`, `static`, `non-pie`,
    /// plus `c++` and `pre-nops` tags.
    tags: Vec<&'static str>,
    /// Damaged copies checked.
    damaged: usize,
    problems: Vec<String>,
}

fn tags_of(a: &Artifact) -> Vec<&'static str> {
    use padtrim_testsuite::Linkage;
    let mut tags = vec![match (a.kind, a.linkage) {
        (ArtifactKind::Object, _) => "object",
        (ArtifactKind::SharedLib, _) => "shared",
        (_, Linkage::Pie) => "pie",
        (_, Linkage::Static) => "static",
        _ => "non-pie",
    }];
    if a.program == "cxx" {
        tags.push("c++");
    }
    if a.pre_nops > 0 {
        tags.push("pre-nops");
    }
    if a.pointer_size == 4 {
        tags.push("elf32");
    }
    tags
}

fn damage_one_file(a: &Artifact, dir: &Path) -> FileOutcome {
    let truth = Truth::of(a);
    let mut outcome = FileOutcome {
        tags: tags_of(a),
        damaged: 0,
        problems: Vec::new(),
    };
    let own = dir.join(&a.name);
    std::fs::create_dir_all(&own).expect("scratch subdir");
    let baseline = own.join("baseline.json");
    save_baseline(&a.path, &baseline);

    // Undamaged: passes, with every entry a site at the file's pre-nop distance.
    let (path, now) = damage(&a.path, &truth.table, &own, "undamaged", &[]);
    let out = check(&path, &["--max-pad", ANY_PAD]);
    if out.status.code() != Some(0) {
        outcome
            .problems
            .push(format!("{} undamaged: {}", a.name, describe(&out)));
    }
    outcome
        .problems
        .extend(verify_undamaged(a, &truth, &path, &now));

    for (label, edits) in damages(&truth.table) {
        let (path, now) = damage(&a.path, &truth.table, &own, &label, &edits);
        outcome
            .problems
            .extend(verify_damage(a, &truth, &label, &path, &now, &baseline));
        outcome.damaged += 1;
    }
    outcome
        .problems
        .extend(verify_shift_all(a, &truth, &own, &baseline));
    outcome
        .problems
        .extend(verify_empty_table(a, &truth, &own, &baseline));
    outcome.damaged += 2;
    outcome
}

/// Every undamaged copy passes, and every damage of every corpus file fails as predicted.
#[test]
fn every_damage_of_every_corpus_file_fails_check_naming_the_problem() {
    let dir = scratch_dir("check_damaged_matrix");
    let files: Vec<&Artifact> = corpus()
        .iter()
        .filter(|a| binutils::table_sites(&a.path) >= 3)
        .collect();
    // Two workers: the machines this runs on have two cores.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(a) = files.get(i) else { break };
                let outcome = damage_one_file(a, &dir);
                outcomes.lock().expect("no poisoned lock").push(outcome);
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("no poisoned lock");
    let damaged: usize = outcomes.iter().map(|o| o.damaged).sum();
    assert!(damaged >= 300, "only {damaged} damaged copies checked");
    for tag in [
        "object", "pie", "shared", "static", "non-pie", "c++", "pre-nops", "elf32",
    ] {
        assert!(
            outcomes.iter().any(|o| o.tags.contains(&tag)),
            "no {tag} file in the damage matrix"
        );
    }
    let problems: Vec<&String> = outcomes.iter().flat_map(|o| &o.problems).collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn verify_undamaged(a: &Artifact, truth: &Truth, path: &Path, now: &[Option<u64>]) -> Vec<String> {
    let (json, status, stderr) = report(path);
    let mut want = BTreeMap::new();
    for (i, &address) in now.iter().enumerate() {
        if let (Verdict::Site, Some(o)) = truth.predict(i, address) {
            *want.entry(o).or_insert(0) += 1;
        }
    }
    let got = offsets(&json);
    let mut problems = Vec::new();
    if status != Some(0) || got != want {
        problems.push(format!(
            "{} undamaged: report status {status:?} ({stderr}), entry_offsets {got:?} != {want:?}",
            a.name
        ));
    }
    problems
}

/// Every entry 2 bytes late. Where pads start with nops before the symbol (`=N,M`), the
/// shifted entries still agree with each other, so the scanner can only tell by the nop
/// before each entry, which alignment padding may explain where the entry is 4-aligned:
/// then about half of them are caught, enough to fail. Without pre-nops every entry is.
fn verify_shift_all(a: &Artifact, truth: &Truth, dir: &Path, baseline: &Path) -> Vec<String> {
    let n = truth.table.slots.len();
    let edits: Vec<(usize, Edit)> = (0..n).map(|i| (i, Edit::Shift(2))).collect();
    let (path, now) = damage(&a.path, &truth.table, dir, "shift+2-all", &edits);
    let mut problems = Vec::new();
    let mut fail = |msg: String| problems.push(format!("{} shift+2-all: {msg}", a.name));
    let (json, _, _) = report(&path);
    let invalid = count(&json, "invalid_entries");
    let usable = json["functions"].as_array().map_or(0, Vec::len) as u64;
    if invalid + usable != n as u64 || count(&json, "zero_entries") != 0 {
        fail(format!(
            "{invalid} invalid + {usable} usable != {n} entries"
        ));
    }
    if truth.pre_bytes == 0 {
        let mut want = BTreeMap::new();
        for (i, addr) in now.iter().enumerate() {
            if let (_, Some(o)) = truth.predict(i, *addr) {
                *want.entry(o).or_insert(0) += 1;
            }
        }
        if invalid != n as u64 || offsets(&json) != want {
            fail(format!(
                "{invalid} of {n} invalid, entry_offsets {:?}, expected all and {want:?}",
                offsets(&json)
            ));
        }
    } else if invalid < (n as u64).div_ceil(4) {
        fail(format!("only {invalid} of {n} entries caught"));
    }
    let out = check(&path, &["--max-pad", ANY_PAD]);
    if out.status.code() != Some(1) || !all_text(&out).contains("invalid table entries") {
        fail(format!("check should fail: {}", describe(&out)));
    }
    let out = check(
        &path,
        &["--baseline", baseline.to_str().expect("utf-8 path")],
    );
    if out.status.code() != Some(1) || !all_text(&out).contains("lost") {
        fail(format!("check --baseline should fail: {}", describe(&out)));
    }
    problems
}

/// `e_shoff` and `e_shentsize` from `readelf -h`.
fn section_headers(path: &Path) -> (u64, u64) {
    let out = Command::new(binutils::READELF)
        .arg("-h")
        .arg(path)
        .output()
        .expect("run readelf -h");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("readelf -h {} has no {name}", path.display()))
    };
    (
        field("Start of section headers:"),
        field("Size of section headers:"),
    )
}

/// The table emptied: `sh_size` 0 in the section header of the table (linked files) or of
/// its relocations (objects). Check must fail with exit 1 whatever is allowed; the file
/// still has a table, just no entries, like a kernel whose `__stop_mcount_loc` equals
/// `__start_mcount_loc`.
fn verify_empty_table(a: &Artifact, truth: &Truth, dir: &Path, baseline: &Path) -> Vec<String> {
    let (shoff, shentsize) = section_headers(&a.path);
    let (size_at, width) = if truth.table.class64 {
        (32, 8)
    } else {
        (20, 4)
    };
    let mut bytes = std::fs::read(&a.path).expect("read original");
    let targets: Vec<usize> = truth
        .table
        .sections
        .iter()
        .filter(|s| {
            if truth.table.object {
                s.kind == "RELA"
                    && truth.table.sections[s.info as usize].name == binutils::TABLE_SECTION
            } else {
                s.name == binutils::TABLE_SECTION
            }
        })
        .map(|s| s.index)
        .collect();
    for index in targets {
        let at = (shoff + index as u64 * shentsize + size_at) as usize;
        bytes[at..at + width].fill(0);
    }
    let path = dir.join("empty-table");
    std::fs::write(&path, &bytes).expect("write empty-table copy");
    assert_eq!(
        binutils::table_sites(&path),
        0,
        "{}: table not emptied",
        a.name
    );

    let mut problems = Vec::new();
    let mut fail = |msg: String| problems.push(format!("{} empty-table: {msg}", a.name));
    let all = [
        "--max-pad",
        ANY_PAD,
        "--allow-zero-entries",
        "--allow-invalid-entries",
    ];
    let out = check(&path, &all);
    if out.status.code() != Some(1) || !all_text(&out).contains("table has no entries") {
        fail(format!("check should fail: {}", describe(&out)));
    }
    let out = check(&path, &[&all[..], &["--json"]].concat());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if json["pass"] != Value::Bool(false) || json["findings"][0]["kind"] != "empty-table" {
        fail(format!("check --json: {}", describe(&out)));
    }
    let out = check(
        &path,
        &["--baseline", baseline.to_str().expect("utf-8 path")],
    );
    let text = all_text(&out);
    let n = truth.table.slots.len();
    if out.status.code() != Some(1) || !text.contains(&format!("usable sites {n} -> 0")) {
        fail(format!("check --baseline: {}", describe(&out)));
    }
    problems
}

/// The table section removed with objcopy: the file has no table at all, which padtrim
/// cannot tell from a program built without `-fpatchable-function-entry`, so `check`
/// exits 2 (unusable input) naming the missing table, on stderr, in `--json` and as a
/// GitHub annotation.
#[test]
fn a_removed_table_is_unusable_input_in_every_format() {
    let dir = scratch_dir("check_damaged_removed");
    for name in [
        "basic-rv64gc-p8-O0-nopie",
        "basic-rv64gc-p8-O2-pie",
        "many-rv64g-p8_2-O0-static",
        "shared_lib-rv64gc-p8-O2-shared",
        "cxx-clang-rv64gc-p8-O2-pie",
        "basic-rv64gc-p8-O2-pie-obj",
        "cxx-gxx-rv64gc-p8_2-O2-nopie-ffs-obj",
    ] {
        let a = artifact(name);
        let path = dir.join(name);
        let out = Command::new("riscv64-linux-gnu-objcopy")
            .args(["--remove-section", binutils::TABLE_SECTION])
            .arg(&a.path)
            .arg(&path)
            .output()
            .expect("run objcopy");
        assert!(out.status.success(), "objcopy {name}: {}", describe(&out));
        assert!(
            !binutils::sections(&path)
                .iter()
                .any(|s| s.name == binutils::TABLE_SECTION),
            "{name}: table still there"
        );
        let path_text = path.to_str().expect("utf-8 path");

        let out = check(&path, &["--max-pad", ANY_PAD]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", describe(&out));
        assert!(
            stderr.trim().lines().count() == 1
                && stderr.contains(path_text)
                && stderr.contains("no __patchable_function_entries table"),
            "{name}: {}",
            describe(&out)
        );

        let out = check(&path, &["--max-pad", ANY_PAD, "--json"]);
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name} --json: {e}: {}", describe(&out)));
        assert_eq!(out.status.code(), Some(2), "{name} --json");
        assert_eq!(json["pass"], Value::Bool(false), "{name}: {json}");
        assert!(
            json["error"]
                .as_str()
                .is_some_and(|e| e.contains("no __patchable_function_entries table")),
            "{name}: {json}"
        );

        let out = check(&path, &["--max-pad", ANY_PAD, "--format", "github"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{name} --format github");
        assert!(
            stdout.starts_with("::error file=")
                && stdout.contains("no __patchable_function_entries table")
                && stdout.lines().count() == 1,
            "{name}: {}",
            describe(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sites lost in a rebuild, and report --baseline

/// Compiles `sources` (each with its own pad option) with riscv64-linux-gnu-gcc into `out`.
fn build(dir: &Path, out: &str, sources: &[(&str, &str, &str)], defines: &[&str]) -> PathBuf {
    let mut objects = Vec::new();
    for (name, text, pad) in sources {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, text).expect("write source");
        let obj = dir.join(format!("{out}-{name}.o"));
        let status = Command::new("riscv64-linux-gnu-gcc")
            .args(["-march=rv64gc", "-mabi=lp64d", "-O2", "-c", pad])
            .args(defines.iter().map(|d| format!("-D{d}")))
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .expect("run riscv64-linux-gnu-gcc (run scripts/setup)");
        assert!(status.success(), "compile {name} for {out}");
        objects.push(obj);
    }
    let exe = dir.join(out);
    let status = Command::new("riscv64-linux-gnu-gcc")
        .args(["-march=rv64gc", "-mabi=lp64d", "-Wl,-q"])
        .args(&objects)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("link");
    assert!(status.success(), "link {out}");
    exe
}

/// Runs a built program under qemu; returns its stdout after asserting exit 0.
fn run_program(exe: &Path) -> String {
    let out = padtrim_testsuite::run_qemu(exe, &[], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        exe.display(),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `count` functions `{prefix}NN(x) = x * NN + 1`, each marked `patchable_function_entry(0)`
/// (no pad) when `macro` is defined, and a table of pointers to them so none is dropped.
fn functions_source(prefix: &str, count: usize, macro_name: &str) -> String {
    let mut c = format!(
        "#ifdef {macro_name}\n#define PAD_{prefix} __attribute__((patchable_function_entry(0)))\n\
         #else\n#define PAD_{prefix}\n#endif\n"
    );
    for i in 0..count {
        c += &format!(
            "PAD_{prefix} __attribute__((noinline)) long {prefix}{i:02}(long x) {{ return x * {i} + 1; }}\n"
        );
    }
    c += &format!("long (*const {prefix}_table[])(long) = {{");
    for i in 0..count {
        c += &format!("{prefix}{i:02}, ");
    }
    c += "};\n";
    c
}

/// A rebuild where 25 functions lose their pad through `patchable_function_entry(0)` and a
/// whole file of 3 more is compiled with `-fpatchable-function-entry=0`: `check --baseline`
/// fails, naming 20 of the 28 lost functions and counting the rest, and the program still
/// runs the same.
#[test]
fn check_baseline_names_functions_that_lost_their_site_in_a_rebuild() {
    let dir = scratch_dir("check_damaged_rebuild");
    let main = functions_source("kept", 10, "NEVER")
        + &functions_source("gone", 25, "DROP")
        + "extern long (*const more_table[])(long);\n\
           #include <stdio.h>\n\
           int main(void) {\n\
             long s = 0;\n\
             for (int i = 0; i < 10; i++) s += kept_table[i](s & 7);\n\
             for (int i = 0; i < 25; i++) s += gone_table[i](s & 7);\n\
             for (int i = 0; i < 3; i++) s += more_table[i](s & 7);\n\
             printf(\"%ld\\n\", s);\n\
             return 0;\n\
           }\n";
    let more = functions_source("more", 3, "NEVER");
    let old = build(
        &dir,
        "old",
        &[
            ("main", &main, "-fpatchable-function-entry=8"),
            ("more", &more, "-fpatchable-function-entry=8"),
        ],
        &[],
    );
    let new = build(
        &dir,
        "new",
        &[
            ("main", &main, "-fpatchable-function-entry=8"),
            ("more", &more, "-fpatchable-function-entry=0"),
        ],
        &["DROP"],
    );
    assert_eq!(run_program(&old), run_program(&new));
    // readelf: the rebuild lost 28 table entries (25 + 3), kept main's and the kept ones.
    let (old_sites, new_sites) = (binutils::table_sites(&old), binutils::table_sites(&new));
    assert_eq!(
        old_sites,
        new_sites + 28,
        "old {old_sites}, new {new_sites}"
    );

    let baseline = dir.join("old.json");
    save_baseline(&old, &baseline);
    let baseline_arg = baseline.to_str().expect("utf-8 path");
    let out = check(&old, &["--baseline", baseline_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "old vs itself: {}",
        describe(&out)
    );

    let out = check(&new, &["--baseline", baseline_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = all_text(&out);
    let line = text
        .lines()
        .find(|l| l.contains("lost their site"))
        .unwrap_or_else(|| panic!("no lost-sites line: {text}"));
    assert!(
        line.contains(&format!(
            "usable sites {old_sites} -> {new_sites}; 28 functions"
        )),
        "{line}"
    );
    assert!(line.ends_with(" and 8 more"), "{line}");
    let lost: Vec<String> = (0..25)
        .map(|i| format!("gone{i:02}"))
        .chain((0..3).map(|i| format!("more{i:02}")))
        .collect();
    let named = lost.iter().filter(|n| line.contains(n.as_str())).count();
    assert_eq!(named, 20, "{line}");
    for i in 0..10 {
        assert!(!line.contains(&format!("kept{i:02}")), "{line}");
    }

    let out = check(&new, &["--baseline", baseline_arg, "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(json["pass"], Value::Bool(false));
    assert_eq!(json["usable_sites"].as_u64(), Some(new_sites));
    assert_eq!(json["findings"][0]["kind"], "sites-lost", "{json}");

    let out = check(&new, &["--baseline", baseline_arg, "--format", "github"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::error file=") && l.contains("(sites-lost)::usable sites")),
        "{}",
        describe(&out)
    );
}

/// `report NEW --baseline OLD.json`: functions added, removed and with a smaller pad, per
/// function and in total, in text and JSON, against what the sources say changed.
#[test]
fn report_baseline_prints_the_difference_per_function_and_in_total() {
    let dir = scratch_dir("check_damaged_report_diff");
    let source = "#include <stdio.h>\n\
        #ifdef NEW\n\
        __attribute__((noinline)) long added_one(long x) { return x + 11; }\n\
        __attribute__((noinline)) long added_two(long x) { return x * 3 - 1; }\n\
        #define SHRINK __attribute__((patchable_function_entry(4)))\n\
        #else\n\
        __attribute__((noinline)) long removed_one(long x) { return x - 5; }\n\
        #define SHRINK\n\
        #endif\n\
        SHRINK __attribute__((noinline)) long shrunk(long x) { return x ^ 0x55; }\n\
        __attribute__((noinline)) long same(long x) { return x << 2; }\n\
        int main(void) {\n\
          long s = same(3) + shrunk(4);\n\
        #ifdef NEW\n\
          s += added_one(s) + added_two(s);\n\
        #else\n\
          s += removed_one(s);\n\
        #endif\n\
          printf(\"%ld\\n\", s);\n\
          return 0;\n\
        }\n";
    let pad8 = "-fpatchable-function-entry=8";
    let old = build(&dir, "old", &[("prog", source, pad8)], &[]);
    let new = build(&dir, "new", &[("prog", source, pad8)], &["NEW"]);
    run_program(&old);
    run_program(&new);
    let (old_sites, new_sites) = (binutils::table_sites(&old), binutils::table_sites(&new));
    assert_eq!(new_sites, old_sites + 1, "two added, one removed");
    // 16-byte pads (8 c.nop) everywhere, except `shrunk`'s 8 bytes in the new build.
    let (old_bytes, new_bytes) = (16 * old_sites, 16 * new_sites - 8);

    let baseline = dir.join("old.json");
    save_baseline(&old, &baseline);
    let out = padtrim()
        .args(["report", "--baseline"])
        .arg(&baseline)
        .arg(&new)
        .output()
        .expect("run padtrim report --baseline");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = text.lines().map(words).collect();
    let has = |want: &str| lines.iter().any(|l| l == want);
    for want in [
        format!(
            "sites: {old_sites} -> {new_sites} (+1) pad bytes: {old_bytes} -> {new_bytes} ({:+})",
            new_bytes as i64 - old_bytes as i64
        ),
        "functions: 2 added, 1 removed, 1 changed".to_string(),
        "+ added_one 0 -> 16 (+16)".to_string(),
        "+ added_two 0 -> 16 (+16)".to_string(),
        "- removed_one 16 -> 0 (-16)".to_string(),
        "~ shrunk 16 -> 8 (-8)".to_string(),
    ] {
        assert!(has(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("same"), "unchanged function listed:\n{text}");

    let out = padtrim()
        .args(["report", "--json", "--baseline"])
        .arg(&baseline)
        .arg(&new)
        .output()
        .expect("run padtrim report --json --baseline");
    let diff: Value = serde_json::from_slice(&out.stdout).expect("diff JSON");
    let names = |key: &str| -> Vec<String> {
        diff[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {diff}"))
            .iter()
            .map(|r| format!("{} {}->{}", r["name"], r["old_bytes"], r["new_bytes"]))
            .collect()
    };
    assert_eq!(
        names("added"),
        ["\"added_one\" 0->16", "\"added_two\" 0->16"]
    );
    assert_eq!(names("removed"), ["\"removed_one\" 16->0"]);
    assert_eq!(names("changed"), ["\"shrunk\" 16->8"]);
    assert_eq!(diff["sites"], serde_json::json!([old_sites, new_sites]));
    assert_eq!(diff["pad_bytes"], serde_json::json!([old_bytes, new_bytes]));
}
